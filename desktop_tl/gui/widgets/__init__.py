"""Pieces two or more rooms share: item-model adapters, thumbnails and their grid, the image viewer, number fields,
plots, the message bar and the job client, the undo record of the labelling grids.
"""
