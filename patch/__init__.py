"""amc.patch: the .amcp patch blob: its byte layout, writer, reader, signature and reference apply."""
