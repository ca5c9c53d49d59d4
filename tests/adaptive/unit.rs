//! Admission, refusals, permits returned on every path, settings.
