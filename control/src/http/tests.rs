use super::*;

#[test]
fn the_metrics_token_admits_its_bearer_only() {
    assert!(MetricsToken::new("short").is_err());
    assert!(MetricsToken::new("sixteen bytes but spaces").is_err());
    let token = MetricsToken::new("0123456789abcdef-scraper").unwrap();
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    };
    assert!(token.admits(&with("Bearer 0123456789abcdef-scraper")));
    assert!(!token.admits(&with("Bearer 0123456789abcdef-scrapeR")));
    assert!(!token.admits(&with("Bearer 0123456789abcdef")));
    assert!(!token.admits(&HeaderMap::new()));
}
