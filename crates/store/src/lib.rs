//! mayfly-store: persistence through sqlx (being written).
