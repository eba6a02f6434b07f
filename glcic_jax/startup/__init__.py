"""Process start-up: what the commands (and benchmark scripts) set before
any heavy import or device work: huge pages for malloc on the CPU
(`huge_pages`, which needs the backend guessed before JAX loads:
`backend`) and JAX's persistent compilation cache (`compilation_cache`).
Standard library only at import, so that `--help` stays fast."""
