"""The Dataset panel (objectName `datasetImport`): import, checks, split settings, near duplicates and the
augmentation preview.
"""
