//! Container image references: parsing and normalisation with the Docker (distribution/reference)
//! rules, and the extraction of name, digest and tag for one container of a pod (spec §5.3).
//!
//! Grammar accepted for a named reference:
//!
//! ```text
//! reference := name [":" tag] ["@" digest]
//! name      := [domain "/"] path                  (at most 255 characters once normalised)
//! domain    := host [":" port]                    host := dns-name | "[" ipv6 "]"
//! path      := component ("/" component)*
//! component := [a-z0-9]+ (separator [a-z0-9]+)*  separator := "." | "_" | "__" | "-"+
//! tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest    := algorithm ":" hex                  (sha256 / sha384 / sha512, lower-case hex)
//! ```
//!
//! Docker Hub normalisation: a first path component is a registry only when it contains `.` or
//! `:`, is `localhost`, or contains an upper-case letter (repository paths are lower-case, so it
//! cannot be one); otherwise the registry is `docker.io`. `index.docker.io` is the legacy name of
//! `docker.io`, and single-component Docker Hub paths live under `library/`.

use std::fmt;

const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_REPOSITORIES: &str = "library/";
const NAME_MAX_LEN: usize = 255;
const TAG_MAX_LEN: usize = 128;
/// The tag Docker assumes when a reference has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Offending values are echoed in errors (and so in CIS conditions and logs); cap them so a
/// hostile or corrupt value cannot blow up a status write.
const ECHO_MAX_CHARS: usize = 256;

/// Why an image reference was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefProblem {
    /// The value is empty.
    #[error("is empty")]
    Empty,
    /// A bare 64-hex string is an image ID, never a repository name.
    #[error("is a 64-hex image ID where a repository name is expected")]
    HexIdentifierAsName,
    /// The registry host or port does not follow the grammar.
    #[error("has an invalid registry host or port")]
    InvalidDomain,
    /// Repository paths must be lower-case.
    #[error("has a repository path that is not lower-case")]
    UppercaseRepository,
    /// The repository path does not follow the grammar (empty component, bad character, …).
    #[error("has an invalid repository path")]
    InvalidPath,
    /// The normalised repository name exceeds 255 characters.
    #[error("has a repository name longer than 255 characters")]
    NameTooLong,
    /// The tag does not follow the grammar.
    #[error("has an invalid tag")]
    InvalidTag,
    /// The digest is not `algorithm:hex` with the exact length and lower-case hex.
    #[error("has an invalid digest")]
    InvalidDigest,
    /// The digest algorithm is well-formed but not sha256, sha384 or sha512.
    #[error("has an unsupported digest algorithm")]
    UnsupportedDigestAlgorithm,
    /// Neither the container's image ID, its image nor its pod spec image names a repository.
    #[error("names no repository (neither the image ID, the image nor the pod spec does)")]
    NoName,
    /// Neither the container's image nor its image ID carries a digest.
    #[error("carries no digest (neither the image nor the image ID does)")]
    NoDigest,
}

/// An image reference that was rejected, with the offending value (cut to 256 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {value:?} {problem}")]
pub struct ImageRefError {
    /// The offending value, at most 256 characters plus `…` when it was longer.
    pub value: String,
    /// What is wrong with it.
    pub problem: ImageRefProblem,
}

impl ImageRefError {
    fn new(value: &str, problem: ImageRefProblem) -> Self {
        let mut echoed: String = value.chars().take(ECHO_MAX_CHARS).collect();
        if echoed.len() < value.len() {
            echoed.push('…');
        }
        ImageRefError {
            value: echoed,
            problem,
        }
    }
}

/// A normalised named reference: repository name, optional tag, optional digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// What "parse any reference" yields: a named reference, or a bare digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnyRef {
    /// A (normalised) named reference.
    Named(ImageRef),
    /// Only a digest, `algorithm:hex`, as container runtimes report image IDs.
    DigestOnly(String),
}

impl ImageRef {
    /// Parses a named reference and normalises it (Docker Hub rules in the module docs).
    pub fn parse(value: &str) -> Result<ImageRef, ImageRefError> {
        parse_named(value).map_err(|problem| ImageRefError::new(value, problem))
    }

    /// Fully qualified repository name without tag or digest, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest `algorithm:hex`, if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for ImageRef {
    /// The canonical form `name[:tag][@digest]`; parsing it yields the same reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl AnyRef {
    /// "Parse any reference": a bare 64-hex string is a sha256 digest, a value shaped like
    /// `sha256|sha384|sha512:<hex>` is a digest, anything else is a named reference.
    ///
    /// Deviation: distribution/reference treats a *malformed* digest such as `sha256:ABC` as the
    /// image `docker.io/library/sha256` with tag `ABC`. A repository called `sha256` is not
    /// plausible, and accepting it would put a bogus name into a scan, so such a value is an
    /// `InvalidDigest` error. Other `word:hex` values stay named references: `app:<git sha>` is
    /// an ordinary image with a tag.
    pub fn parse(value: &str) -> Result<AnyRef, ImageRefError> {
        if is_image_id(value) {
            return Ok(AnyRef::DigestOnly(format!("sha256:{value}")));
        }
        if looks_like_digest(value) {
            return validate_digest(value)
                .map(|()| AnyRef::DigestOnly(value.to_string()))
                .map_err(|problem| ImageRefError::new(value, problem));
        }
        ImageRef::parse(value).map(AnyRef::Named)
    }

    /// The repository name, unless this is a bare digest.
    pub fn name(&self) -> Option<&str> {
        match self {
            AnyRef::Named(named) => Some(named.name()),
            AnyRef::DigestOnly(_) => None,
        }
    }

    /// The digest, if there is one.
    pub fn digest(&self) -> Option<&str> {
        match self {
            AnyRef::Named(named) => named.digest(),
            AnyRef::DigestOnly(digest) => Some(digest),
        }
    }
}

impl fmt::Display for AnyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyRef::Named(named) => named.fmt(f),
            AnyRef::DigestOnly(digest) => f.write_str(digest),
        }
    }
}

/// The image of one container as the scan needs it (spec §5.3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerImage {
    /// Normalised repository name, e.g. `docker.io/stas/echo-server`.
    pub name: String,
    /// Digest the runtime actually runs, `algorithm:hex`.
    pub digest: String,
    /// Tag as written in the pod spec; `""` when the spec pins a digest (or is unknown),
    /// `latest` when the spec gives neither tag nor digest.
    pub tag: String,
    /// Whether `name@digest` can run this image again, i.e. whether it can be scanned.
    pub digest_kind: DigestKind,
}

/// What the digest of a [`ContainerImage`] is, which decides whether a scan Job can run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DigestKind {
    /// A registry (manifest) digest, from a `name@digest` reference the runtime reported:
    /// `name@digest` is the image, on a node that has it or in the registry.
    Registry,
    /// The runtime's local image ID, the digest of the image's configuration, which containerd
    /// (k3s included) reports as a bare `sha256:<hex>` image ID when the node knows no registry
    /// digest for the image: imported with `ctr images import` or from a k3s air-gap archive,
    /// built on the node. No registry serves a manifest under that digest and the runtime does
    /// not resolve `name@<image ID>`, so a scan Job by digest could never start.
    LocalImageId,
}

/// Extracts name, digest and tag of one container (spec §5.3).
///
/// * `status_image` / `status_image_id`: `status.containerStatuses[].image` / `.imageID`. Both
///   must parse; the caller skips statuses where either is still empty (image not pulled yet).
/// * name and digest come from one `name@digest` reference when the runtime reported one, the
///   image ID first: the scan Job runs `name@digest`, and a pair the runtime reported is one it
///   resolves locally (an image known under several repositories has a digest per repository).
///   containerd reports the image ID as the first repository digest of the image whenever it
///   has one, and the image as its first tag or, after a pull by digest only, as the bare
///   image configuration digest (`sha256:<hex>`), which is never a name.
/// * Without such a reference the digest is a bare one, the runtime's local image ID
///   ([`DigestKind::LocalImageId`]; k3s and `ctr` report imported images so): the image ID's,
///   else the image's. Its name is the first repository among image ID, image and `spec_image`
///   (the pod spec's image); a digest is never taken for a name.
/// * tag: from `spec_image`, the matching `spec.containers[].image`. `None` (no spec container
///   of that name) gives `""`: the tag is unknown, and we never invent one.
///
/// Deviation from the Go operator: it took the image ID's digest whenever there was one, also a
/// bare image ID over a `name@digest` image, and scanned `name@<image ID>`, a reference nothing
/// resolves. Both rules give the same name and digest for every form the real runtimes report.
pub fn container_image(
    spec_image: Option<&str>,
    status_image: &str,
    status_image_id: &str,
) -> Result<ContainerImage, ImageRefError> {
    let image = AnyRef::parse(status_image)?;
    let image_id = AnyRef::parse(status_image_id)?;
    let spec = spec_image.map(AnyRef::parse).transpose()?;
    let registry = [&image_id, &image]
        .into_iter()
        .find_map(|reference| match reference {
            AnyRef::Named(named) => named.digest().map(|digest| (named.name(), digest)),
            AnyRef::DigestOnly(_) => None,
        });
    let (name, digest, digest_kind) = match registry {
        Some((name, digest)) => (name, digest, DigestKind::Registry),
        None => {
            let name = image_id
                .name()
                .or(image.name())
                .or(spec.as_ref().and_then(AnyRef::name))
                .ok_or_else(|| ImageRefError::new(status_image_id, ImageRefProblem::NoName))?;
            let digest = image_id
                .digest()
                .or(image.digest())
                .ok_or_else(|| ImageRefError::new(status_image_id, ImageRefProblem::NoDigest))?;
            (name, digest, DigestKind::LocalImageId)
        }
    };
    Ok(ContainerImage {
        name: name.to_string(),
        digest: digest.to_string(),
        tag: spec.as_ref().map(spec_tag).unwrap_or_default(),
        digest_kind,
    })
}

/// A digest in the spec makes the tag irrelevant to what runs, so it is dropped; no tag at all
/// means Docker's default.
fn spec_tag(spec_image: &AnyRef) -> String {
    match spec_image {
        AnyRef::DigestOnly(_) => String::new(),
        AnyRef::Named(named) if named.digest.is_some() => String::new(),
        AnyRef::Named(named) => named.tag.as_deref().unwrap_or(DEFAULT_TAG).to_string(),
    }
}

fn parse_named(value: &str) -> Result<ImageRef, ImageRefProblem> {
    if value.is_empty() {
        return Err(ImageRefProblem::Empty);
    }
    if is_image_id(value) {
        return Err(ImageRefProblem::HexIdentifierAsName);
    }
    let (without_digest, digest) = match value.split_once('@') {
        Some((rest, digest)) => {
            validate_digest(digest)?;
            (rest, Some(digest))
        }
        None => (value, None),
    };
    let (name, tag) = split_tag(without_digest);
    if tag.is_some_and(|tag| !is_valid_tag(tag)) {
        return Err(ImageRefProblem::InvalidTag);
    }
    let (domain, path) = split_domain(name);
    let domain = match domain {
        Some(domain) if !is_valid_domain(domain) => return Err(ImageRefProblem::InvalidDomain),
        Some(LEGACY_DOCKER_HUB) | None => DOCKER_HUB,
        Some(domain) => domain,
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ImageRefProblem::UppercaseRepository);
    }
    if !path.split('/').all(is_valid_path_component) {
        return Err(ImageRefProblem::InvalidPath);
    }
    let official = if domain == DOCKER_HUB && !path.contains('/') {
        OFFICIAL_REPOSITORIES
    } else {
        ""
    };
    let name = format!("{domain}/{official}{path}");
    if name.len() > NAME_MAX_LEN {
        return Err(ImageRefProblem::NameTooLong);
    }
    Ok(ImageRef {
        name,
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// The tag follows the first `:` of the last path component; a `:` before the last `/` belongs
/// to a registry port.
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_component_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    let last_component = reference.get(last_component_start..).unwrap_or("");
    match last_component.find(':') {
        Some(colon) => {
            let at = last_component_start + colon;
            (reference.get(..at).unwrap_or(""), reference.get(at + 1..))
        }
        None => (reference, None),
    }
}

fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn is_valid_domain(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ipv6, after)) => {
                let ipv6_ok =
                    !ipv6.is_empty() && ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
                match after {
                    "" => (ipv6_ok, None),
                    _ => (ipv6_ok, Some(after.strip_prefix(':').unwrap_or(after))),
                }
            }
            None => (false, None),
        },
        None => match domain.split_once(':') {
            Some((host, port)) => (host.split('.').all(is_valid_host_component), Some(port)),
            None => (domain.split('.').all(is_valid_host_component), None),
        },
    };
    host_ok && port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

fn is_valid_host_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_valid_path_component(component: &str) -> bool {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    bytes.first().is_some_and(is_alnum)
        && bytes.last().is_some_and(is_alnum)
        && component
            .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .filter(|separator| !separator.is_empty())
            .all(|separator| {
                matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
            })
}

fn is_valid_tag(tag: &str) -> bool {
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    tag.len() <= TAG_MAX_LEN
        && tag.as_bytes().first().is_some_and(is_word)
        && tag.bytes().all(|b| is_word(&b) || b == b'.' || b == b'-')
}

/// A bare image ID: exactly 64 lower-case hex characters.
fn is_image_id(value: &str) -> bool {
    value.len() == 64 && is_lower_hex(value)
}

fn is_lower_hex(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Hex length of each supported digest algorithm.
fn digest_hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    }
}

/// `<supported algorithm>:<hex of any case and length>`: meant as a digest, valid or not.
fn looks_like_digest(value: &str) -> bool {
    value.split_once(':').is_some_and(|(algorithm, hex)| {
        digest_hex_len(algorithm).is_some()
            && !hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn validate_digest(digest: &str) -> Result<(), ImageRefProblem> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ImageRefProblem::InvalidDigest);
    };
    let grammatical = is_valid_digest_algorithm(algorithm)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !grammatical {
        return Err(ImageRefProblem::InvalidDigest);
    }
    match digest_hex_len(algorithm) {
        None => Err(ImageRefProblem::UnsupportedDigestAlgorithm),
        Some(len) if hex.len() == len && is_lower_hex(hex) => Ok(()),
        Some(_) => Err(ImageRefProblem::InvalidDigest),
    }
}

/// `[A-Za-z][A-Za-z0-9]*` components joined by one of `+ . - _`.
fn is_valid_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '-', '_']).all(|component| {
        component
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && component.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Entry point of the `image_ref` fuzz target (and of its corpus replay in `cargo test`): any
/// bytes, split into up to three lines (spec image, status image, status imageID), must parse
/// or fail without panicking, a parsed reference must survive a canonical round trip, and a
/// container image's name, digest and tag must themselves be valid.
pub fn fuzz_entry(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let first = lines.next().unwrap_or_default();
    if let Ok(parsed) = AnyRef::parse(first) {
        let canonical = parsed.to_string();
        let again = AnyRef::parse(&canonical).map_err(|e| {
            format!("canonical form {canonical:?} of {first:?} does not parse: {e}")
        })?;
        if again != parsed {
            return Err(format!("{first:?} → {canonical:?} → {again:?} changed"));
        }
    }
    let status_image = lines.next().unwrap_or(first);
    let image_id = lines.next().unwrap_or(status_image);
    if let Ok(image) = container_image(Some(first), status_image, image_id) {
        let named = ImageRef::parse(&image.name)
            .map_err(|e| format!("extracted name {:?} is not a reference: {e}", image.name))?;
        if named.tag().is_some() || named.digest().is_some() {
            return Err(format!(
                "extracted name {:?} carries a tag or digest",
                image.name
            ));
        }
        if !image.digest.contains(':') {
            return Err(format!(
                "extracted digest {:?} has no algorithm",
                image.digest
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA_A: &str = "sha256:4b59f7dacd37c688968756d176139715df69d89eb0be1802e059316f9d58d9ef";
    const SHA_B: &str = "sha256:793485b4e2ab2ef60cd3fb1e6a4f9a49a7f4b8ef9cdf2d0b1f3e8a2e1b6c469e";
    const SHA_C: &str = "sha256:f991b3a7a2e3f3de2c2e8b8e3b9b0e4f2b6f0d9f1c0a3b5d7e9f1a2b3c4ddaff";
    const SHA_D: &str = "sha256:83469837b2a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d64907";

    fn parse(value: &str) -> ImageRef {
        ImageRef::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn problem(value: &str) -> ImageRefProblem {
        match AnyRef::parse(value) {
            Ok(parsed) => panic!("{value} parsed as {parsed:?}"),
            Err(e) => e.problem,
        }
    }

    fn extract(spec: Option<&str>, image: &str, image_id: &str) -> (String, String, String) {
        let c = container_image(spec, image, image_id).unwrap_or_else(|e| panic!("{e}"));
        (c.name, c.digest, c.tag)
    }

    fn expected(name: &str, digest: &str, tag: &str) -> (String, String, String) {
        (name.to_string(), digest.to_string(), tag.to_string())
    }

    fn kind(spec: Option<&str>, image: &str, image_id: &str) -> DigestKind {
        let c = container_image(spec, image, image_id).unwrap_or_else(|e| panic!("{e}"));
        c.digest_kind
    }

    /// Digest algorithms and lengths, bracketed IPv6 registries and the name length limit at
    /// their boundaries.
    #[test]
    fn digests_registries_and_lengths_at_their_boundaries() {
        let sha384 = format!("sha384:{}", "a".repeat(96));
        let sha512 = format!("sha512:{}", "b".repeat(128));
        assert_eq!(
            parse(&format!("img@{sha384}")).digest.as_deref(),
            Some(sha384.as_str())
        );
        assert_eq!(
            parse(&format!("img@{sha512}")).digest.as_deref(),
            Some(sha512.as_str())
        );
        for (digest, want) in [
            (
                format!("sha256:{}", "a".repeat(96)),
                ImageRefProblem::InvalidDigest,
            ),
            (
                format!("md5:{}", "c".repeat(32)),
                ImageRefProblem::UnsupportedDigestAlgorithm,
            ),
            (
                format!("1md5:{}", "c".repeat(32)),
                ImageRefProblem::InvalidDigest,
            ),
            ("md5:abc".to_owned(), ImageRefProblem::InvalidDigest),
            (
                format!("md5:{}", "z".repeat(32)),
                ImageRefProblem::InvalidDigest,
            ),
        ] {
            assert_eq!(problem(&format!("img@{digest}")), want, "{digest}");
        }
        assert_eq!(parse("[::1]/img:1").name, "[::1]/img");
        assert_eq!(parse("[::1]:5000/img").name, "[::1]:5000/img");
        assert_eq!(problem("[zz]:5000/img"), ImageRefProblem::InvalidDomain);
        assert_eq!(problem("[]:5000/img"), ImageRefProblem::InvalidDomain);
        let longest = format!("r.io/{}", "a".repeat(250));
        assert_eq!(parse(&longest).name, longest);
        assert_eq!(
            problem(&format!("{longest}a")),
            ImageRefProblem::NameTooLong
        );
    }

    // The table of spec §5.3 ("ImageReference – Creating from pod"), one test per row.

    #[test]
    fn row_private_registry_with_tag() {
        let image = "my.registry/repository/app:f54a333e";
        let image_id = format!("my.registry/repository/app@{SHA_A}");
        assert_eq!(
            extract(Some(image), image, &image_id),
            expected("my.registry/repository/app", SHA_A, "f54a333e")
        );
        assert_eq!(kind(Some(image), image, &image_id), DigestKind::Registry);
    }

    #[test]
    fn row_docker_hub_user_image_pinned_by_digest() {
        let image = format!("stas/echo-server@{SHA_B}");
        let image_id = format!("docker.io/stas/echo-server@{SHA_B}");
        assert_eq!(
            extract(Some(&image), &image, &image_id),
            expected("docker.io/stas/echo-server", SHA_B, "")
        );
    }

    #[test]
    fn row_k3s_reports_the_image_as_a_bare_digest() {
        let spec = format!("stas/echo-server@{SHA_B}");
        let image_id = format!("docker.io/stas/echo-server@{SHA_B}");
        assert_eq!(
            extract(Some(&spec), SHA_B, &image_id),
            expected("docker.io/stas/echo-server", SHA_B, "")
        );
    }

    /// Name and digest as upstream (so the CIS keeps its name), but the digest is the local
    /// image ID: no scan Job can run `name@<image ID>`.
    #[test]
    fn row_k3s_imported_image_has_a_bare_digest_as_image_id() {
        let (spec, image) = (
            "application-operator/controller:latest",
            "docker.io/application-operator/controller:latest",
        );
        assert_eq!(
            extract(Some(spec), image, SHA_C),
            expected("docker.io/application-operator/controller", SHA_C, "latest")
        );
        assert_eq!(kind(Some(spec), image, SHA_C), DigestKind::LocalImageId);
    }

    #[test]
    fn row_corporate_mirror_takes_name_from_image_id() {
        let image_id = format!("dummy.registry.mycorp.com/mysql@{SHA_D}");
        assert_eq!(
            extract(
                Some("mysql"),
                "dummy.registry.mycorp.com/mysql:latest",
                &image_id
            ),
            expected("dummy.registry.mycorp.com/mysql", SHA_D, "latest")
        );
    }

    /// A bare image ID is the local image ID; a registry digest the runtime reports as the
    /// image wins over it (the Go operator took the image ID and scanned a reference that
    /// cannot resolve).
    #[test]
    fn registry_digest_of_the_image_wins_over_a_bare_image_id() {
        let image = format!("docker.io/library/nginx:1.2@{SHA_A}");
        assert_eq!(
            extract(Some("nginx:1.2"), &image, SHA_C),
            expected("docker.io/library/nginx", SHA_A, "1.2")
        );
        assert_eq!(kind(Some("nginx:1.2"), &image, SHA_C), DigestKind::Registry);
    }

    #[test]
    fn bare_hex_image_id_is_a_sha256_local_image_id() {
        let hex = SHA_C.trim_start_matches("sha256:");
        assert_eq!(
            extract(Some("nginx"), "nginx", hex),
            expected("docker.io/library/nginx", SHA_C, "latest")
        );
        assert_eq!(kind(Some("nginx"), "nginx", hex), DigestKind::LocalImageId);
    }

    // The forms a real kubelet 1.36 with containerd 1.6.20 and 2.2.9 reports
    // (/work/shared/docs/real-node-notes.md); kwok fakes only the first.
    const PULLED: &str = "sha256:7e04c8b0e1d1f1aa1a6d1b2c3d4e5f60718293a4b5c6d7e8f9012345a6b7c8d9";
    const OTHER: &str = "sha256:37a0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddee";
    const OTHER_CONFIG: &str =
        "sha256:1509614a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
    const PRELOADED_CONFIG: &str =
        "sha256:3558993a4b5c6d7e8f9012345a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7";

    #[test]
    fn real_containerd_pulled_by_tag() {
        let image = "127.0.0.1:5443/test/busybox:1";
        let image_id = format!("127.0.0.1:5443/test/busybox@{PULLED}");
        assert_eq!(
            extract(Some(image), image, &image_id),
            expected("127.0.0.1:5443/test/busybox", PULLED, "1")
        );
        assert_eq!(kind(Some(image), image, &image_id), DigestKind::Registry);
    }

    /// containerd reports the tag it already had, not the pod's digest reference.
    #[test]
    fn real_containerd_by_digest_already_present_by_tag() {
        let spec = format!("127.0.0.1:5443/test/busybox@{PULLED}");
        let image = "127.0.0.1:5443/test/busybox:1";
        let image_id = format!("127.0.0.1:5443/test/busybox@{PULLED}");
        assert_eq!(
            extract(Some(&spec), image, &image_id),
            expected("127.0.0.1:5443/test/busybox", PULLED, "")
        );
        assert_eq!(kind(Some(&spec), image, &image_id), DigestKind::Registry);
    }

    /// The image is the configuration digest, which is neither the name (never `sha256`) nor
    /// the digest to scan: both come from the image ID.
    #[test]
    fn real_containerd_fresh_pull_by_digest_reports_the_config_id_as_image() {
        let spec = format!("127.0.0.1:5443/test/other@{OTHER}");
        let image_id = format!("127.0.0.1:5443/test/other@{OTHER}");
        assert_eq!(
            extract(Some(&spec), OTHER_CONFIG, &image_id),
            expected("127.0.0.1:5443/test/other", OTHER, "")
        );
        assert_eq!(
            kind(Some(&spec), OTHER_CONFIG, &image_id),
            DigestKind::Registry
        );
        // The same without a spec container (ephemeral or renamed): still a real name.
        assert_eq!(
            extract(None, OTHER_CONFIG, &image_id),
            expected("127.0.0.1:5443/test/other", OTHER, "")
        );
    }

    /// An image imported with `ctr` has no repository digest: the image ID is its
    /// configuration digest, which names the CIS but can never be pulled or resolved as
    /// `name@digest`.
    #[test]
    fn real_containerd_ctr_imported_image_has_only_a_local_image_id() {
        let image = "localhost/test/preloaded:1";
        assert_eq!(
            extract(Some(image), image, PRELOADED_CONFIG),
            expected("localhost/test/preloaded", PRELOADED_CONFIG, "1")
        );
        assert_eq!(
            kind(Some(image), image, PRELOADED_CONFIG),
            DigestKind::LocalImageId
        );
    }

    /// When neither status field is a name, the pod spec's image names the repository.
    #[test]
    fn name_comes_from_the_spec_when_both_status_fields_are_digests() {
        let spec = "localhost/test/preloaded:1";
        assert_eq!(
            extract(Some(spec), PRELOADED_CONFIG, PRELOADED_CONFIG),
            expected("localhost/test/preloaded", PRELOADED_CONFIG, "1")
        );
        assert_eq!(
            kind(Some(spec), PRELOADED_CONFIG, PRELOADED_CONFIG),
            DigestKind::LocalImageId
        );
    }

    #[test]
    fn missing_spec_image_gives_an_empty_tag() {
        let image_id = format!("nginx@{SHA_A}");
        assert_eq!(
            extract(None, "nginx:1.2", &image_id),
            expected("docker.io/library/nginx", SHA_A, "")
        );
    }

    #[test]
    fn container_without_any_name_or_digest_is_an_error() {
        let no_name = container_image(None, SHA_A, SHA_B);
        assert_eq!(no_name.map_err(|e| e.problem), Err(ImageRefProblem::NoName));
        let no_digest = container_image(None, "nginx:1.2", "docker.io/library/nginx:1.2");
        assert_eq!(
            no_digest.map_err(|e| e.problem),
            Err(ImageRefProblem::NoDigest)
        );
    }

    #[test]
    fn docker_shim_image_id_is_rejected_with_the_value() {
        let image_id = format!("docker-pullable://nginx@{SHA_A}");
        let err = container_image(Some("nginx"), "nginx:latest", &image_id).unwrap_err();
        assert_eq!(err.problem, ImageRefProblem::InvalidDomain);
        assert_eq!(err.value, image_id);
        assert!(err.to_string().contains("docker-pullable://nginx@"));
    }

    #[test]
    fn unparseable_spec_image_is_an_error() {
        let image_id = format!("nginx@{SHA_A}");
        let err = container_image(Some("Nginx"), "nginx", &image_id).unwrap_err();
        assert_eq!(err.problem, ImageRefProblem::UppercaseRepository);
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(parse("nginx").name(), "docker.io/library/nginx");
        assert_eq!(
            parse("stas/echo-server").name(),
            "docker.io/stas/echo-server"
        );
        assert_eq!(parse("docker.io/nginx").name(), "docker.io/library/nginx");
        let legacy = parse("index.docker.io/library/nginx:1.2");
        assert_eq!(legacy.to_string(), "docker.io/library/nginx:1.2");
        assert_eq!(legacy.tag(), Some("1.2"));
        assert_eq!(
            parse("index.docker.io/nginx").name(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn registry_detection() {
        assert_eq!(parse("localhost/foo").name(), "localhost/foo");
        assert_eq!(parse("my.registry/app").name(), "my.registry/app");
        assert_eq!(parse("registry:5000/app").name(), "registry:5000/app");
        assert_eq!(parse("Registry/app").name(), "Registry/app");
        assert_eq!(parse("[::1]:5000/app").name(), "[::1]:5000/app");
        assert_eq!(parse("foo/bar/baz").name(), "docker.io/foo/bar/baz");
        // Without a slash the colon introduces a tag, not a port.
        let no_slash = parse("localhost:5000");
        assert_eq!(
            (no_slash.name(), no_slash.tag()),
            ("docker.io/library/localhost", Some("5000"))
        );
    }

    #[test]
    fn localhost_with_port_tag_and_digest() {
        let value = format!("localhost:5000/foo/bar:tag@{SHA_A}");
        let parsed = parse(&value);
        assert_eq!(parsed.name(), "localhost:5000/foo/bar");
        assert_eq!(parsed.tag(), Some("tag"));
        assert_eq!(parsed.digest(), Some(SHA_A));
        assert_eq!(parsed.to_string(), value);
        assert_eq!(
            AnyRef::parse(&value),
            Ok(AnyRef::Named(parsed.clone())),
            "parse-any agrees with parse for named references"
        );
    }

    #[test]
    fn any_reference_shapes() {
        let hex = SHA_A.trim_start_matches("sha256:");
        assert_eq!(
            AnyRef::parse(hex),
            Ok(AnyRef::DigestOnly(SHA_A.to_string()))
        );
        assert_eq!(
            AnyRef::parse(SHA_A),
            Ok(AnyRef::DigestOnly(SHA_A.to_string()))
        );
        // A tag that happens to be hex (a git sha) keeps its image.
        let git_sha_tag = AnyRef::parse("app:0123456789abcdef0123456789abcdef01234567");
        assert_eq!(
            git_sha_tag.ok().and_then(|r| r.name().map(str::to_string)),
            Some("docker.io/library/app".to_string())
        );
        let upper_hex = format!("sha256:{}", hex.to_uppercase());
        assert_eq!(problem(&upper_hex), ImageRefProblem::InvalidDigest);
        assert_eq!(problem("sha256:abc"), ImageRefProblem::InvalidDigest);
        assert_eq!(
            ImageRef::parse(hex).map_err(|e| e.problem),
            Err(ImageRefProblem::HexIdentifierAsName)
        );
    }

    #[test]
    fn uppercase_repository_is_rejected() {
        assert_eq!(problem("Nginx"), ImageRefProblem::UppercaseRepository);
        assert_eq!(
            problem("docker.io/Library/nginx"),
            ImageRefProblem::UppercaseRepository
        );
        assert_eq!(
            problem("my.registry/App:1"),
            ImageRefProblem::UppercaseRepository
        );
    }

    #[test]
    fn malformed_references_are_rejected() {
        assert_eq!(problem(""), ImageRefProblem::Empty);
        assert_eq!(problem("nginx:"), ImageRefProblem::InvalidTag);
        assert_eq!(problem("nginx:-x"), ImageRefProblem::InvalidTag);
        assert_eq!(
            problem(&format!("nginx:{}", "a".repeat(129))),
            ImageRefProblem::InvalidTag
        );
        assert_eq!(problem("nginx@sha256:abc"), ImageRefProblem::InvalidDigest);
        assert_eq!(problem("nginx@sha256"), ImageRefProblem::InvalidDigest);
        let md5 = "nginx@md5:0123456789abcdef0123456789abcdef";
        assert_eq!(problem(md5), ImageRefProblem::UnsupportedDigestAlgorithm);
        assert_eq!(problem("foo//bar"), ImageRefProblem::InvalidPath);
        assert_eq!(problem("foo/bar-"), ImageRefProblem::InvalidPath);
        assert_eq!(problem("foo/a___b"), ImageRefProblem::InvalidPath);
        assert_eq!(problem("foo/bär"), ImageRefProblem::InvalidPath);
        assert_eq!(problem(":tag"), ImageRefProblem::InvalidPath);
        assert_eq!(problem("-bad.host/app"), ImageRefProblem::InvalidDomain);
        assert_eq!(problem("host:port/app"), ImageRefProblem::InvalidDomain);
        assert_eq!(
            problem(&format!("a/{}", "b".repeat(250))),
            ImageRefProblem::NameTooLong
        );
        assert!(ImageRef::parse("foo/a__b-c---d.e").is_ok());
    }

    #[test]
    fn echoed_value_is_bounded() {
        let long = format!("docker-pullable://{}", "x".repeat(10_000));
        let err = AnyRef::parse(&long).unwrap_err();
        assert_eq!(err.value.chars().count(), ECHO_MAX_CHARS + 1);
        assert!(err.value.ends_with('…'));
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}"
    }

    fn reference() -> impl Strategy<Value = String> {
        let domain = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_string()),
            Just("index.docker.io/".to_string()),
            Just("localhost/".to_string()),
            "[a-z][a-z0-9-]{0,6}[a-z0-9]\\.[a-z]{2,3}(:[0-9]{1,5})?/",
            "localhost:[0-9]{1,5}/",
        ];
        let path = prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/"));
        let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
        let digest = prop::option::of("[0-9a-f]{64}");
        // Without a registry, a first component with a dot would itself be read as a registry.
        let unambiguous = |(domain, path, _, _): &(String, String, _, _)| {
            !domain.is_empty()
                || !path.split('/').next().is_some_and(|c| c.contains('.'))
                || !path.contains('/')
        };
        (domain, path, tag, digest)
            .prop_filter("ambiguous registry", unambiguous)
            .prop_map(|(domain, path, tag, digest)| {
                let tag = tag.map(|t| format!(":{t}")).unwrap_or_default();
                let digest = digest.map(|d| format!("@sha256:{d}")).unwrap_or_default();
                format!("{domain}{path}{tag}{digest}")
            })
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(
            value in prop_oneof![reference(), "[0-9a-f]{64}", "sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})"],
        ) {
            let parsed = AnyRef::parse(&value);
            prop_assert!(parsed.is_ok(), "{value}: {parsed:?}");
            let parsed = parsed.unwrap();
            prop_assert_eq!(AnyRef::parse(&parsed.to_string()), Ok(parsed));
        }

        #[test]
        fn arbitrary_input_never_panics(value in "\\PC{0,80}|[a-zA-Z0-9:/@._-]{0,80}") {
            if let Ok(parsed) = AnyRef::parse(&value) {
                prop_assert_eq!(AnyRef::parse(&parsed.to_string()), Ok(parsed));
            }
            let _ = container_image(Some(&value), &value, &value);
        }
    }
}
