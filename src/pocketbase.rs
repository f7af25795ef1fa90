//! pocketbase
