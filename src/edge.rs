//! URL paths on connections (`EdgePath`). API Gateway WebSocket APIs accept no path beyond the
//! stage, so with `EdgePath=true` a CloudFront distribution in front of the API runs
//! `edge/path-to-header.js`, which moves the path the client connected to into
//! [`PATH_HEADER`]. The authorizer checks its shape and passes it on in its context, `$connect`
//! stores it on the connection, `whoami` returns it.
//!
//! The path is what the client asked for, like any URL: it names something (a device, a room),
//! it never proves anything. A client that connects to the execute-api URL directly can set the
//! header itself, so a path is only ever trusted together with a token that vouches for it.

/// The header the CloudFront Function sets.
pub const PATH_HEADER: &str = "x-wshub-path";
/// Longer paths are refused at the edge (414) and by the authorizer.
pub const MAX_PATH_CHARS: usize = 1024;
/// The CloudFront Function's code, as deployed (template.yaml inlines the same text).
pub const FUNCTION_CODE: &str = include_str!("../edge/path-to-header.js");

/// What the CloudFront Function does with a viewer request's URI: `Ok(Some(header))`,
/// `Ok(None)` for the root (no header), or the status it answers instead. The local hub calls
/// this so that it hands the path over exactly as the edge would.
pub fn viewer_request(uri_path: &str) -> Result<Option<String>, u16> {
    // JavaScript's `length` counts UTF-16 units; a URI path is ASCII (percent-encoded).
    if uri_path.encode_utf16().count() > MAX_PATH_CHARS {
        return Err(414);
    }
    Ok((uri_path != "/").then(|| uri_path.to_owned()))
}

/// A path as the authorizer accepts it: `/` then visible ASCII, at most [`MAX_PATH_CHARS`].
pub fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() > 1
        && path.len() <= MAX_PATH_CHARS
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(viewer_request("/"), Ok(None));
        assert_eq!(viewer_request("/ocpp/CP001"), Ok(Some("/ocpp/CP001".into())));
        assert_eq!(viewer_request(&format!("/{}", "a".repeat(1024))), Err(414));
        assert!(valid_path("/ocpp/CP%20001"));
        assert!(!valid_path("/"));
        assert!(!valid_path("ocpp"));
        assert!(!valid_path("/a b"));
        assert!(!valid_path("/é"));
        assert!(!valid_path(&format!("/{}", "a".repeat(1024))));
    }
}
