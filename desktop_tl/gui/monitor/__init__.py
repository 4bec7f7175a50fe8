"""The Monitor panel: a silent trial in the window: watch a folder with an exported model into a tamper-evident
log, see the latest cases with their heat maps, the counts and the drift chart, and the realised figures
beside the promised ones once the true labels are known.
"""
