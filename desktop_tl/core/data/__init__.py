"""Images in: the dataset index, scanning and splitting a source, decoding, preprocessing, augmentation,
the decoded-image cache and the PyTorch datasets and loaders."""
