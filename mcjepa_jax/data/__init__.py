"""Input data: the embedded synthetic dataset, augmentations, grain pipelines, file formats."""
