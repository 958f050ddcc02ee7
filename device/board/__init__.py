"""Board-side Python: copied onto the board and run there by the board's own interpreter."""
