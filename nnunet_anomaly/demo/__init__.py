"""``nnunet_anomaly demo``: the whole product, end to end, on the embedded offline demo dataset.

The demo does what a user would do, through the real command-line tools, each in its own
subprocess with ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` pointing into the
demo's working folder (the user's own values are never read or changed):

1. build ``Dataset990_MNIDemo`` (``dataset_conversion/Dataset990_MNIDemo.py``);
2. ``nnUNetv2_plan_and_preprocess -d 990 -c 3d_fullres``, then the small ``3d_demo`` configuration
   (``python -m nnunet_anomaly.nnunet.planning add-config``);
3. ``nnUNetv2_train 990 3d_demo FOLD -tr AnomalyTaskTrainer_demo`` for the five folds of T = 1, all
   at the same time on a CPU (``--jobs``), one core each;
4. ``nnunet_anomaly predict ... -f 0 1 2 3 4`` (the documented ensemble: probabilities averaged) of the
   test set, of the five tasks applied to the held-out healthy test images
   (:func:`build_synthetic_test_set`) and of the real lesions when cached (:func:`find_real_lesions`);
   ``nnUNetv2_predict -f FOLD`` of each fold alone on both test sets;
5. ``nnunet_anomaly evaluate`` of the ensemble, with baselines;
6. ``nnunet_anomaly show-tasks`` (the task montage) and a Markdown report with PNG figures
   (:func:`write_report`), whose first section says whether the models find the lesions, with the
   numbers of :mod:`~.quality`.

``--setting cxr`` runs the same shape in 2D on real chest radiographs (:mod:`~.cxr`: 5 healthy
images train, 3 healthy and 8 pneumonia images are scored sample-wise, synthetic lesions on the
held-out healthy ones pixel-wise), reusing these steps' training and prediction.

Every step writes a done-stamp last (atomically); a re-run skips finished steps and redoes an
interrupted one from a clean folder, so Ctrl-C never leaves a half-written result behind.

One module per concern: :mod:`~.settings` (what is trained), :mod:`~.runner` (the resumable step
runner), :mod:`~.steps` (the steps and their commands), :mod:`~.synthetic` (the synthetic held-out
set), :mod:`~.real_lesions`, :mod:`~.quality` (the numbers), :mod:`~.figures`, :mod:`~.report` and
:mod:`~.cli` (the verb).

Python use (the same as the command line)::

    from nnunet_anomaly.demo import main
    main(["--workdir", "demo_output"])
"""
from nnunet_anomaly.demo.cli import configure_parser, main, run
from nnunet_anomaly.demo.real_lesions import crude_brain_mask, find_real_lesions, prepare_real_lesions
from nnunet_anomaly.demo.report import write_report
from nnunet_anomaly.demo.runner import Step, StepFailed, Workspace
from nnunet_anomaly.demo.settings import DEMO, QUICK, DemoSettings
from nnunet_anomaly.demo.steps import demo_steps
from nnunet_anomaly.demo.synthetic import build_synthetic_test_set

__all__ = ["DemoSettings", "DEMO", "QUICK", "Step", "StepFailed", "Workspace", "demo_steps", "build_synthetic_test_set",
           "find_real_lesions", "prepare_real_lesions", "crude_brain_mask", "write_report", "configure_parser", "run",
           "main"]
