"""Label assist: score a folder of unlabelled images with the current run's model, the labelling grid, and Retrain.
Mounted on the Dataset panel by the shell.
"""
