"""The Training panel (objectName `trainingMonitor`): the recipe and its settings, the run folder, the run's
progress, curves and log.
"""
