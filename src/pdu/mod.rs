//! Events (PDUs) per room version (filled in next).
