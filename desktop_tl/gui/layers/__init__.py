"""The Layers panel (objectName `freezeTree`): which layers train, as a tree of the model's modules."""
