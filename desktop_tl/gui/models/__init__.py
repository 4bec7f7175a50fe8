"""The Models panel (objectName `modelBrowser`): the backbone catalogue and the weights choice."""
