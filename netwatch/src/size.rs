//! Sizes as people write them: `500MiB`, `20GB`, `1048576`.

/// Parses a size: a number with an optional unit (B, KB/KiB, MB/MiB, GB/GiB, TB/TiB).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let expected = || format!("`{text}`: expected a size like 500MiB, 20GB or 1048576");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return Err(expected()),
    };
    let value: f64 = number.parse().map_err(|_| expected())?;
    if !value.is_finite() || value < 0.0 {
        return Err(expected());
    }
    Ok((value * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_bytes_parse_and_words_do_not() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5 MB"), Ok(1_500_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
