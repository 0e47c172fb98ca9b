"""Stage ``score``: the registered segmentation applied to every feature snapshot."""
