"""Work that spans processes and machines, on Ray (the ``ray`` extra), over the same per-block functions as the
single-process code: ``scoring`` (distributed ``score_file``)."""

__all__: list[str] = []
