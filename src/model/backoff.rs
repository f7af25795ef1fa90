//! Restart back-off and crash-loop policy of the embedded supervisor (pure).
