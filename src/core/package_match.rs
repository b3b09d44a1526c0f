//! Which packages a rule names: `*` name patterns and package URLs, shared by exceptions
//! and VEX documents.
//!
//! Name patterns know one wildcard, `*` (any characters, also none): registries, namespaces
//! and package names have no other convention both users and scanners share. A purl names a
//! package as each ecosystem's scanner reports it ([`package_of_purl`]).

use crate::crd::Vulnerability;

/// A `*` pattern (see the module doc), or an exact name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    wildcard: bool,
}

impl Pattern {
    /// The pattern as written, `*` standing for any characters.
    pub fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            wildcard: true,
        }
    }

    /// Exactly `text` (a `*` in it is a character: a purl names one package).
    pub fn exact(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            wildcard: false,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `text` matches: the parts between `*`s appear in order, the first at the start
    /// and the last at the end. Linear in the text for each part (greedy leftmost matching is
    /// exact for a single wildcard kind), so a hostile pattern costs no backtracking.
    pub fn matches(&self, text: &str) -> bool {
        if !self.wildcard {
            return self.text == text;
        }
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let middle: Vec<&str> = parts.collect();
        let Some((last, middle)) = middle.split_last() else {
            // No `*`: the whole text.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// A package a rule is narrowed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRule {
    /// Names the scanner may report the package under (a purl gives several: `ns/name`,
    /// `ns:name`, `name`), as patterns; any one matches.
    names: Vec<Pattern>,
    /// Installed versions matched exactly; any version when empty.
    versions: Vec<String>,
}

impl PackageRule {
    /// A package by name pattern, with exact `versions` (any when empty).
    pub fn named(name: &str, versions: Vec<String>) -> PackageRule {
        PackageRule {
            names: vec![Pattern::new(name)],
            versions,
        }
    }

    /// Names the package may be reported under.
    pub fn names(&self) -> &[Pattern] {
        &self.names
    }

    /// Installed versions matched; any when empty.
    pub fn versions(&self) -> &[String] {
        &self.versions
    }

    /// Whether finding `v` is in this package.
    pub fn matches(&self, v: &Vulnerability) -> bool {
        self.names.iter().any(|p| p.matches(&v.pkg_name))
            && (self.versions.is_empty() || self.versions.contains(&v.installed_version))
    }
}

/// A package URL's names as scanners report them, and its version.
///
/// `pkg:<type>/<namespace>/<name>@<version>?<qualifiers>#<subpath>` (components
/// percent-encoded). Scanners name a package with a namespace differently by ecosystem:
/// Go and most others `namespace/name` (`github.com/x/y`), Maven `namespace:name`
/// (`org.yaml:snakeyaml`), npm `@scope/name` (the `@` encoded in the purl), and OS packages
/// only `name` (the namespace is the distribution). Any of these matches.
/// The error says why, not which purl (the caller names it).
pub fn package_of_purl(purl: &str) -> Result<PackageRule, String> {
    let invalid = |why: &str| why.to_string();
    let rest = purl
        .strip_prefix("pkg:")
        .ok_or_else(|| invalid("does not start with pkg:"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let rest = rest.split('?').next().unwrap_or_default();
    let (path, version) = match rest.rsplit_once('@') {
        // `@` in a namespace is encoded, so an `@` after the last `/` starts the version.
        Some((path, version)) if !version.contains('/') => (path, Some(version)),
        _ => (rest, None),
    };
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&e))?;
    if segments.len() < 2 {
        return Err(invalid("needs a type and a name"));
    }
    segments.remove(0);
    let name = segments.pop().unwrap_or_default();
    let mut names = vec![name.clone()];
    if !segments.is_empty() {
        let namespace = segments.join("/");
        names.push(format!("{namespace}/{name}"));
        names.push(format!("{namespace}:{name}"));
    }
    let versions = match version {
        Some(v) if !v.is_empty() => vec![percent_decode(v).map_err(|e| invalid(&e))?],
        _ => Vec::new(),
    };
    Ok(PackageRule {
        names: names.iter().map(|n| Pattern::exact(n)).collect(),
        versions,
    })
}

/// `%XX` sequences decoded; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}
