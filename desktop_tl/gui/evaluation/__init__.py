"""The Evaluation panel: figures with their source, operating point, referral, calibration, subgroups, mistakes and
the label review grid.
"""
