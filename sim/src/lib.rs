//! Deterministic simulated cluster for the image-scanner core (filled in by a later change).
