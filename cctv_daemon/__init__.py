"""cctv-daemon: record cameras into gapless, crash-safe, catalogued MP4 segments."""

__version__ = "0.1.0"
