from nnunet_anomaly.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
