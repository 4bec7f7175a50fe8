"""Models: the catalog, the one door to building them (timm), their offline weights and which layers train."""
