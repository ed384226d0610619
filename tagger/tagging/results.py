"""What tagging one clip gives: :class:`TagResult`."""

__all__ = ["TagResult"]


class TagResult:
    """Tags of one clip: path, duration, clip probabilities, per-patch taggram, or an error."""

    __slots__ = ("index", "path", "track_id", "duration", "timestamps", "probabilities", "taggram", "error")

    def __init__(
        self, index, path, track_id=None, duration=None, timestamps=None, probabilities=None, taggram=None, error=None
    ):
        self.index, self.path, self.track_id, self.duration = index, path, track_id, duration
        self.timestamps, self.probabilities, self.taggram, self.error = timestamps, probabilities, taggram, error

    @property
    def ok(self):
        return self.error is None
