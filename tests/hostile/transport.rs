//! (filled by issue #12 work)
