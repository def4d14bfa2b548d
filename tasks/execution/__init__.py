"""Running slices: job specs, the local and dcp backends, rounds of retries, the server client."""
