"""The command line's private parts: shared options, output, `demo` and `watch`."""
