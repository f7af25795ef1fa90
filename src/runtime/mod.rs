//! How instance processes run: the runtime seam and its implementations.
