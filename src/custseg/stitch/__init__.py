"""Identity stitching (stage ``stitch``): a single customer view from identity records."""

from custseg.stitch.steps import StitchResult, StitchSettings, stitch_identities

__all__ = ["StitchResult", "StitchSettings", "stitch_identities"]
