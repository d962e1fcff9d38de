"""Dataset-conversion scripts (installed as ``nnunet_anomaly.dataset_conversion``), one per dataset.

=====================================  ===================================================================
script                                 output
=====================================  ===================================================================
``Dataset501_HCP``                     HCP T2 (+T1), healthy brain training set (3D, 2 mm)
``Dataset502_BraTS2017``               BraTS 2017 HGG+LGG tumour test set (imagesTs/labelsTs)
``Dataset503_ISLES2015``               ISLES 2015 SISS stroke test set (imagesTs/labelsTs)
``Dataset504_VinDrCXR``                VinDr-CXR with the DDAD split (2D, 256x256, [-1, 1])
``Dataset505_Radiographs``             your own radiographs: DICOM, PNG or JPEG (2D, as Dataset504)
``DatasetPool_MOODAbdomen``            MOOD abdominal CT external pool (FolderPool layout, 128^3)
``DatasetPool_ImageNet``               natural-image external pool (FolderPool layout, 256^2 PNG)
``Dataset990_MNIDemo``                 the offline demo set from nilearn's MNI152 template (+ pool)
=====================================  ===================================================================

Each runs as ``python dataset_conversion/<script>.py --help`` or
``python -m nnunet_anomaly.dataset_conversion.<script> --help``; the shared helpers live in
:mod:`nnunet_anomaly.conversion`. See ``documentation/datasets.md``.
"""
