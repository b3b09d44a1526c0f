//! What an OpenVEX document says of one finding of one scanned image: whether its author
//! states that the vulnerability does not apply there (`not_affected`, or `fixed`), so that the
//! finding need not be counted.
//!
//! # Versions
//!
//! OpenVEX v0.2.0 (`vulnerability` an object with `name`, `@id` and `aliases`; `products` a
//! list of objects with `@id`, `identifiers.purl`, `hashes` and `subcomponents`) and the legacy
//! v0.0.x shape (`vulnerability` a string, `products` a list of strings, a statement-level
//! `subcomponents` list that narrows every product). The shape is read per statement from the
//! JSON types, as the `@context` of legacy documents does not always carry a version. The
//! `@context` must start with `https://openvex.dev/ns`; fields this module has no use for are
//! ignored.
//!
//! # Which statement decides
//!
//! A VEX document is a history: an author who learns more appends a statement rather than
//! editing the old one (`under_investigation`, then `not_affected`; or `not_affected`, then
//! `affected` once a new code path is found). So among the statements naming the finding's
//! ID (`name`, an alias, or an `@id` that is not a URL; ASCII case ignored) and a product
//! matching it, the latest decides: its time is the statement's `timestamp`, else the
//! document's; a statement with neither is older than any dated one (the Go implementation's
//! zero time), and of two at the same time the one later in the document wins. Only when
//! that statement is `not_affected` or `fixed` is there a [`Verdict`]: a later `affected` or
//! `under_investigation` takes back an earlier `not_affected`.
//!
//! # Products
//!
//! A product is identified by its `@id` and its `identifiers.purl` (either may match) and by
//! its `hashes`:
//!
//! * An image: an `oci` purl, `pkg:oci/<name>@<digest>?repository_url=<repository>`, which
//!   matches when the digest (if given) is the scan's, the name is the last segment of the
//!   scan's repository, and the `repository_url` (if given) is that repository once both are
//!   normalised as image references (`index.docker.io/library/nginx` is
//!   `docker.io/library/nginx`). Without digest or `repository_url` it says less, and so
//!   covers more: as in purl matching, what is not given is not compared. Or an image
//!   reference `<repository>[:<tag>]@<digest>`, or a bare digest, or a
//!   `sha-256`/`sha-384`/`sha-512` hash, matched on the digest. An image product covers every
//!   finding of the image, unless it lists subcomponents: then only findings in one of them
//!   (a purl, matched on package name and version; any other text, matched on the package
//!   name exactly).
//! * A package: a purl of any other type. It concerns every image, and covers a finding in
//!   that package or in one of its subcomponents.
//! * Anything else (a CPE, a URL, an image reference by tag only, which a push can move) is
//!   ignored and counted ([`VexDocument::ignored_products`]), never an error; a malformed
//!   purl is one.
//!
//! # Bounds
//!
//! [`MAX_DOCUMENT_BYTES`] of text, [`MAX_STATEMENTS`] statements, [`MAX_COMPONENTS`] products
//! and subcomponents (as written: the legacy statement-level list counts once), 100 aliases
//! per statement, 256 bytes of justification kept. Errors are one line of at most 300 bytes,
//! and name the statement they concern by its 1-based position (`statement 3: …`).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::crd::Vulnerability;
use crate::fingerprint::fnv1a64;
use crate::image_ref::{AnyRef, ImageRef};
use crate::package_match::{PackageRule, package_of_purl, percent_decode};

/// A ConfigMap's own limit.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Statements in one document.
pub const MAX_STATEMENTS: usize = 10_000;
/// Products and subcomponents over the whole document.
pub const MAX_COMPONENTS: usize = 50_000;
/// Justifications end up in the status of every scan they suppress a finding of.
const MAX_JUSTIFICATION_BYTES: usize = 256;
/// A vulnerability has a handful of aliases; a hundred is a generator gone wrong.
const MAX_ALIASES: usize = 100;
/// Errors end up in a condition message.
const MAX_ERROR_BYTES: usize = 300;
/// How much of an offending value an error echoes.
const ECHO_MAX_CHARS: usize = 60;
const CONTEXT_PREFIX: &str = "https://openvex.dev/ns";
/// The spec's closed list for `not_affected`.
pub const JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

/// A parsed document, reduced to what matching needs (no JSON kept: a large document costs
/// its statements, not its text).
#[derive(Clone, Debug, PartialEq)]
pub struct VexDocument {
    hash: u64,
    statements: Vec<Statement>,
    /// Upper-case vulnerability IDs and aliases with the position of their statement, sorted:
    /// a finding's statements are a binary search away, however long the document.
    index: Vec<(String, u32)>,
    ignored: usize,
    /// Whether some product is a package, which may be in any image.
    package_products: bool,
}

/// The four statuses of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VexStatus {
    /// The product does not contain the vulnerability, or it cannot be exploited there.
    NotAffected,
    /// The product is affected.
    Affected,
    /// The product contains the fix.
    Fixed,
    /// Not known yet.
    UnderInvestigation,
}

/// What a document says of one finding, when it says the finding does not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// [`VexStatus::NotAffected`] or [`VexStatus::Fixed`].
    pub status: VexStatus,
    /// The spec's justification value, `impact: <impact statement>` when a `not_affected`
    /// statement gives only that, or `fixed`; at most 256 bytes.
    pub justification: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
struct Statement {
    status: VexStatus,
    /// What a verdict reports, bounded when parsed; empty for the statuses without verdict.
    justification: String,
    time: Option<jiff::Timestamp>,
    products: Vec<Product>,
}

#[derive(Clone, Debug, PartialEq)]
struct Product {
    images: Vec<ImageMatch>,
    packages: Vec<PackageRule>,
    /// `None` when not narrowed; shared, since a legacy statement narrows all its products
    /// with one list. A list without a usable entry narrows to nothing: its author meant to
    /// narrow, and covering the whole image instead would say more than they did.
    subcomponents: Option<Arc<Vec<SubMatch>>>,
}

/// An identifier of an image product.
#[derive(Clone, Debug, PartialEq)]
enum ImageMatch {
    /// An `oci` purl; the name lower-case, the digest lower-case, the repository normalised.
    Oci {
        name: String,
        digest: Option<String>,
        repository: Option<String>,
    },
    /// An image reference with a digest: the normalised repository and the digest.
    Reference { name: String, digest: String },
    /// A digest alone (`algorithm:hex`, lower-case): a bare one or a hash.
    Digest(String),
}

/// An identifier of a subcomponent.
#[derive(Clone, Debug, PartialEq)]
enum SubMatch {
    Package(PackageRule),
    /// A package name, exactly as the scanner reports it.
    Name(String),
}

/// The scan a finding belongs to, normalised once per question.
struct Scan<'a> {
    repository: String,
    /// The last segment of the repository, lower-case: what an `oci` purl's name is.
    last: String,
    digest: &'a str,
}

impl<'a> Scan<'a> {
    fn new(image: &str, digest: &'a str) -> Scan<'a> {
        let repository = repository_name(image.trim());
        let last = repository
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Scan {
            repository,
            last,
            digest: digest.trim(),
        }
    }
}

impl ImageMatch {
    /// Other `oci` qualifiers (`tag`, `arch`, `os`) are not compared: the digest names the
    /// content, a tag may have moved since the document was written, and a multi-arch image's
    /// digest already fixes the platform (or names the index, which covers all of them).
    fn matches(&self, scan: &Scan<'_>) -> bool {
        match self {
            ImageMatch::Oci {
                name,
                digest,
                repository,
            } => {
                *name == scan.last
                    && digest
                        .as_ref()
                        .is_none_or(|d| d.eq_ignore_ascii_case(scan.digest))
                    && repository.as_ref().is_none_or(|r| *r == scan.repository)
            }
            ImageMatch::Reference { name, digest } => {
                *name == scan.repository && digest.eq_ignore_ascii_case(scan.digest)
            }
            ImageMatch::Digest(digest) => digest.eq_ignore_ascii_case(scan.digest),
        }
    }
}

impl SubMatch {
    fn matches(&self, v: &Vulnerability) -> bool {
        match self {
            SubMatch::Package(rule) => rule.matches(v),
            SubMatch::Name(name) => *name == v.pkg_name,
        }
    }
}

impl Product {
    fn matches(&self, scan: &Scan<'_>, v: &Vulnerability) -> bool {
        let in_subcomponents = || {
            self.subcomponents
                .as_ref()
                .is_some_and(|subs| subs.iter().any(|s| s.matches(v)))
        };
        let image = self.images.iter().any(|i| i.matches(scan))
            && (self.subcomponents.is_none() || in_subcomponents());
        let package = !self.packages.is_empty()
            && (self.packages.iter().any(|p| p.matches(v)) || in_subcomponents());
        image || package
    }
}

impl VexDocument {
    /// Parses and checks a whole document: any statement the spec rejects (an unknown status,
    /// `not_affected` without justification or impact statement, a malformed purl or
    /// timestamp) makes the document an error rather than being skipped, so that a typo
    /// cannot silently drop a statement that takes back an earlier one.
    pub fn parse(text: &str) -> Result<VexDocument, String> {
        parse_document(text).map_err(|e| one_line(&e))
    }

    /// FNV-1a of the text parsed: changes with the document, so what was decided with it can
    /// be told from what was decided with another version.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many statements the document has.
    pub fn statements(&self) -> usize {
        self.statements.len()
    }

    /// Products and subcomponents that can never match (CPE only, a tag without digest, …),
    /// so that an author can be told why their statement has no effect.
    pub fn ignored_products(&self) -> usize {
        self.ignored
    }

    /// Whether any statement can concern findings of this image: a product that is this image,
    /// or a package product (any image).
    pub fn concerns(&self, image: &str, digest: &str) -> bool {
        if self.package_products {
            return true;
        }
        let scan = Scan::new(image, digest);
        self.statements
            .iter()
            .flat_map(|s| &s.products)
            .any(|p| p.images.iter().any(|i| i.matches(&scan)))
    }

    /// What the latest statement on finding `v` of this image says (see the module doc), when
    /// it says the finding does not apply. `image`: the scan's fully qualified repository,
    /// e.g. `docker.io/library/nginx` or `registry.local:5000/team/app` (no tag, no digest);
    /// `digest`: `sha256:<hex>`. Logarithmic in the document's IDs, then linear in the
    /// statements on this ID only.
    pub fn verdict(&self, image: &str, digest: &str, v: &Vulnerability) -> Option<Verdict<'_>> {
        let id = v.vulnerability_id.trim().to_ascii_uppercase();
        let start = self
            .index
            .partition_point(|(key, _)| key.as_str() < id.as_str());
        let candidates = self
            .index
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|(key, _)| *key == id);
        let mut scan = None;
        let mut latest: Option<(Option<jiff::Timestamp>, u32, &Statement)> = None;
        for &(_, number) in candidates {
            let Some(statement) = usize::try_from(number)
                .ok()
                .and_then(|n| self.statements.get(n))
            else {
                continue;
            };
            if latest.is_some_and(|(time, n, _)| (statement.time, number) <= (time, n)) {
                continue;
            }
            let scan = scan.get_or_insert_with(|| Scan::new(image, digest));
            if statement.products.iter().any(|p| p.matches(scan, v)) {
                latest = Some((statement.time, number, statement));
            }
        }
        let (_, _, statement) = latest?;
        match statement.status {
            VexStatus::NotAffected | VexStatus::Fixed => Some(Verdict {
                status: statement.status,
                justification: &statement.justification,
            }),
            VexStatus::Affected | VexStatus::UnderInvestigation => None,
        }
    }
}

fn parse_document(text: &str) -> Result<VexDocument, String> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "document is {} bytes, more than the limit of {MAX_DOCUMENT_BYTES}",
            text.len()
        ));
    }
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(root) = root else {
        return Err("not an OpenVEX document (not a JSON object)".to_string());
    };
    match root.get("@context") {
        Some(Value::String(context)) if context.starts_with(CONTEXT_PREFIX) => {}
        Some(Value::String(context)) => {
            return Err(format!(
                "not an OpenVEX document (@context {} does not start with {CONTEXT_PREFIX})",
                echo(context)
            ));
        }
        Some(_) => return Err("not an OpenVEX document (@context is not a string)".to_string()),
        None => return Err("not an OpenVEX document (@context missing)".to_string()),
    }
    let document_time = timestamp(&root)?;
    let statements = match root.get("statements") {
        Some(Value::Array(statements)) => statements,
        Some(_) => return Err("statements is not an array".to_string()),
        None => return Err("no statements".to_string()),
    };
    if statements.len() > MAX_STATEMENTS {
        return Err(format!(
            "{} statements, more than the limit of {MAX_STATEMENTS}",
            statements.len()
        ));
    }
    let components = statements.iter().map(components_in).sum::<usize>();
    if components > MAX_COMPONENTS {
        return Err(format!(
            "{components} products and subcomponents, more than the limit of {MAX_COMPONENTS}"
        ));
    }
    let mut document = VexDocument {
        hash: fnv1a64(text.as_bytes()),
        statements: Vec::with_capacity(statements.len()),
        index: Vec::new(),
        ignored: 0,
        package_products: false,
    };
    for (position, value) in statements.iter().enumerate() {
        let (statement, ids) = parse_statement(value, document_time, &mut document.ignored)
            .map_err(|e| format!("statement {}: {e}", position + 1))?;
        // At most MAX_STATEMENTS, checked above.
        let number = u32::try_from(position).unwrap_or(u32::MAX);
        document.package_products |= statement.products.iter().any(|p| !p.packages.is_empty());
        document
            .index
            .extend(ids.into_iter().map(|id| (id, number)));
        document.statements.push(statement);
    }
    document.index.sort();
    Ok(document)
}

/// Products and subcomponents of one statement as written, counted before anything is built.
fn components_in(statement: &Value) -> usize {
    let length = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, Vec::len);
    let products = statement.get("products").and_then(Value::as_array);
    let subcomponents: usize = products
        .into_iter()
        .flatten()
        .map(|p| length(p.get("subcomponents")))
        .sum();
    length(statement.get("products"))
        .saturating_add(subcomponents)
        .saturating_add(length(statement.get("subcomponents")))
}

/// A statement and its upper-case IDs (name, aliases, `@id`), without duplicates.
fn parse_statement(
    value: &Value,
    document_time: Option<jiff::Timestamp>,
    ignored: &mut usize,
) -> Result<(Statement, Vec<String>), String> {
    let Value::Object(object) = value else {
        return Err("not an object".to_string());
    };
    let ids = vulnerability_ids(object.get("vulnerability"))?;
    let status = match string(object, "status")? {
        Some("not_affected") => VexStatus::NotAffected,
        Some("affected") => VexStatus::Affected,
        Some("fixed") => VexStatus::Fixed,
        Some("under_investigation") => VexStatus::UnderInvestigation,
        Some(other) => {
            return Err(format!(
                "unknown status {} (not_affected, affected, fixed, under_investigation)",
                echo(other)
            ));
        }
        None => return Err("no status".to_string()),
    };
    let justification = match status {
        VexStatus::NotAffected => not_affected_justification(object)?,
        VexStatus::Fixed => "fixed".to_string(),
        VexStatus::Affected | VexStatus::UnderInvestigation => String::new(),
    };
    let time = timestamp(object)?.or(document_time);
    let shared = match object.get("subcomponents") {
        None | Some(Value::Null) => None,
        Some(value) => subcomponents(value, ignored)?.map(Arc::new),
    };
    let products = match object.get("products") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(products)) => {
            let mut parsed = Vec::with_capacity(products.len());
            for (position, value) in products.iter().enumerate() {
                let product = product(value, &shared, ignored)
                    .map_err(|e| format!("product {}: {e}", position + 1))?;
                parsed.extend(product);
            }
            parsed
        }
        Some(_) => return Err("products is not an array".to_string()),
    };
    Ok((
        Statement {
            status,
            justification,
            time,
            products,
        },
        ids,
    ))
}

/// The IDs a finding may carry for this vulnerability: a v0.2.0 object's `name`, `aliases`
/// and `@id` (unless a URL, which no scanner reports), or a legacy string.
fn vulnerability_ids(value: Option<&Value>) -> Result<Vec<String>, String> {
    let mut ids: Vec<&str> = Vec::new();
    match value {
        Some(Value::String(name)) => ids.push(name),
        Some(Value::Object(vulnerability)) => {
            ids.extend(string(vulnerability, "name").map_err(|e| format!("vulnerability {e}"))?);
            let id = string(vulnerability, "@id").map_err(|e| format!("vulnerability {e}"))?;
            ids.extend(id.filter(|id| !id.contains("://")));
            match vulnerability.get("aliases") {
                None | Some(Value::Null) => {}
                Some(Value::Array(aliases)) => {
                    if aliases.len() > MAX_ALIASES {
                        return Err(format!(
                            "{} aliases, more than the limit of {MAX_ALIASES}",
                            aliases.len()
                        ));
                    }
                    for alias in aliases {
                        let Value::String(alias) = alias else {
                            return Err("vulnerability aliases: not all strings".to_string());
                        };
                        ids.push(alias);
                    }
                }
                Some(_) => return Err("vulnerability aliases is not an array".to_string()),
            }
        }
        None | Some(Value::Null) => return Err("no vulnerability".to_string()),
        Some(_) => return Err("vulnerability is neither a string nor an object".to_string()),
    }
    let mut ids: Vec<String> = ids
        .iter()
        .map(|id| id.trim().to_ascii_uppercase())
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() {
        return Err("vulnerability has no name".to_string());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The spec requires a `not_affected` statement to say why: a justification from its list,
/// or an impact statement.
fn not_affected_justification(statement: &Map<String, Value>) -> Result<String, String> {
    let justification = string(statement, "justification")?.filter(|j| !j.is_empty());
    let impact = string(statement, "impact_statement")?
        .map(str::trim)
        .filter(|i| !i.is_empty());
    match (justification, impact) {
        (Some(j), _) if JUSTIFICATIONS.contains(&j) => Ok(j.to_string()),
        (Some(j), _) => Err(format!(
            "unknown justification {} ({})",
            echo(j),
            JUSTIFICATIONS.join(", ")
        )),
        (None, Some(impact)) => {
            Ok(bounded(&format!("impact: {impact}"), MAX_JUSTIFICATION_BYTES).to_string())
        }
        (None, None) => {
            Err("status not_affected needs a justification or an impact_statement".to_string())
        }
    }
}

/// A product of a statement, or `None` when nothing identifies it usably (counted in
/// `ignored`). `shared`: the statement-level subcomponents of the legacy shape, for a product
/// without its own.
fn product(
    value: &Value,
    shared: &Option<Arc<Vec<SubMatch>>>,
    ignored: &mut usize,
) -> Result<Option<Product>, String> {
    let mut images = Vec::new();
    let mut packages = Vec::new();
    let mut own = None;
    match value {
        Value::String(id) => product_identifier(id, &mut images, &mut packages)?,
        Value::Object(object) => {
            for id in component_ids(object)? {
                product_identifier(id, &mut images, &mut packages)?;
            }
            images.extend(hashes(object)?);
            if let Some(value) = object.get("subcomponents").filter(|v| !v.is_null()) {
                own = subcomponents(value, ignored)?.map(Arc::new);
            }
        }
        _ => return Err("neither a string nor an object".to_string()),
    }
    if images.is_empty() && packages.is_empty() {
        *ignored += 1;
        return Ok(None);
    }
    Ok(Some(Product {
        images,
        packages,
        subcomponents: own.or_else(|| shared.clone()),
    }))
}

/// `@id` and `identifiers.purl`, when given and not empty.
fn component_ids(object: &Map<String, Value>) -> Result<Vec<&str>, String> {
    let mut ids: Vec<&str> = string(object, "@id")?.into_iter().collect();
    match object.get("identifiers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(identifiers)) => {
            ids.extend(string(identifiers, "purl").map_err(|e| format!("identifiers {e}"))?);
        }
        Some(_) => return Err("identifiers is not an object".to_string()),
    }
    Ok(ids
        .into_iter()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect())
}

fn product_identifier(
    id: &str,
    images: &mut Vec<ImageMatch>,
    packages: &mut Vec<PackageRule>,
) -> Result<(), String> {
    let id = id.trim();
    if id.starts_with("pkg:") {
        if purl_type(id).eq_ignore_ascii_case("oci") {
            images.push(oci_purl(id)?);
        } else {
            packages.push(package_purl(id)?);
        }
        return Ok(());
    }
    match AnyRef::parse(id) {
        Ok(AnyRef::Named(reference)) => {
            // By tag only: the tag may name other content by the time a scan runs.
            if let Some(digest) = reference.digest() {
                images.push(ImageMatch::Reference {
                    name: reference.name().to_string(),
                    digest: digest.to_string(),
                });
            }
        }
        Ok(AnyRef::DigestOnly(digest)) => images.push(ImageMatch::Digest(digest)),
        Err(_) => {}
    }
    Ok(())
}

/// `sha-256` and its siblings, which OpenVEX spells with a hyphen and image digests without.
fn hashes(object: &Map<String, Value>) -> Result<Vec<ImageMatch>, String> {
    let hashes = match object.get("hashes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(hashes)) => hashes,
        Some(_) => return Err("hashes is not an object".to_string()),
    };
    let mut digests = Vec::new();
    for algorithm in ["sha-256", "sha-384", "sha-512"] {
        let Some(value) = string(hashes, algorithm).map_err(|e| format!("hashes {e}"))? else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if value.is_empty() {
            continue;
        }
        let prefix = algorithm.replace('-', "");
        let digest = if value.starts_with(&format!("{prefix}:")) {
            value
        } else {
            format!("{prefix}:{value}")
        };
        digests.push(ImageMatch::Digest(digest));
    }
    Ok(digests)
}

/// The subcomponents a product is narrowed to, or `None` when the list is empty (not
/// narrowed, as in the Go implementation). Empty strings are skipped, as there.
fn subcomponents(value: &Value, ignored: &mut usize) -> Result<Option<Vec<SubMatch>>, String> {
    let Value::Array(entries) = value else {
        return Err("subcomponents is not an array".to_string());
    };
    let mut narrowed = false;
    let mut matches = Vec::new();
    for (position, entry) in entries.iter().enumerate() {
        let before = matches.len();
        let context = |e: String| format!("subcomponent {}: {e}", position + 1);
        match entry {
            Value::String(id) if id.trim().is_empty() => continue,
            Value::String(id) => sub_identifier(id, &mut matches).map_err(context)?,
            Value::Object(object) => {
                for id in component_ids(object).map_err(context)? {
                    sub_identifier(id, &mut matches).map_err(context)?;
                }
            }
            _ => return Err(context("neither a string nor an object".to_string())),
        }
        narrowed = true;
        if matches.len() == before {
            *ignored += 1;
        }
    }
    Ok(narrowed.then_some(matches))
}

fn sub_identifier(id: &str, matches: &mut Vec<SubMatch>) -> Result<(), String> {
    let id = id.trim();
    if id.starts_with("pkg:") {
        matches.push(SubMatch::Package(package_purl(id)?));
    } else if !(id.contains("://") || id.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("cpe:"))) {
        matches.push(SubMatch::Name(id.to_string()));
    }
    Ok(())
}

/// The type of a purl (`pkg:<type>/…`; the spec tolerates slashes after `pkg:`).
fn purl_type(purl: &str) -> &str {
    let rest = purl.strip_prefix("pkg:").unwrap_or(purl);
    rest.trim_start_matches('/')
        .split(['/', '@', '?', '#'])
        .next()
        .unwrap_or_default()
}

fn package_purl(purl: &str) -> Result<PackageRule, String> {
    package_of_purl(purl).map_err(|why| format!("malformed purl {}: {why}", echo(purl)))
}

/// `pkg:oci/<name>@<digest>?repository_url=<repository>&…` (components percent-encoded).
fn oci_purl(purl: &str) -> Result<ImageMatch, String> {
    let malformed = |why: &str| format!("malformed purl {}: {why}", echo(purl));
    let rest = purl.strip_prefix("pkg:").unwrap_or(purl);
    let rest = rest.trim_start_matches('/');
    let rest = rest.split('#').next().unwrap_or_default();
    let (rest, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
    let (path, version) = match rest.rsplit_once('@') {
        // `@` in a name is encoded, so an `@` after the last `/` starts the version.
        Some((path, version)) if !version.contains('/') => (path, Some(version)),
        _ => (rest, None),
    };
    let name = path
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .last()
        .ok_or_else(|| malformed("needs a type and a name"))?;
    let name = percent_decode(name)
        .map_err(|e| malformed(&e))?
        .to_ascii_lowercase();
    let digest = match version.filter(|v| !v.is_empty()) {
        Some(version) => Some(
            percent_decode(version)
                .map_err(|e| malformed(&e))?
                .trim()
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    let mut repository = None;
    for pair in qualifiers.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.eq_ignore_ascii_case("repository_url") {
            let url = percent_decode(value).map_err(|e| malformed(&e))?;
            let url = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let url = url.trim().trim_end_matches('/');
            if !url.is_empty() {
                repository = Some(repository_name(url));
            }
        }
    }
    Ok(ImageMatch::Oci {
        name,
        digest,
        repository,
    })
}

/// The normalised repository of an image reference, or the text itself when it is none.
fn repository_name(text: &str) -> String {
    ImageRef::parse(text).map_or_else(|_| text.to_string(), |r| r.name().to_string())
}

/// `timestamp` of a document or statement: absent, `null`, or RFC 3339.
fn timestamp(object: &Map<String, Value>) -> Result<Option<jiff::Timestamp>, String> {
    string(object, "timestamp")?
        .map(|text| {
            text.trim()
                .parse::<jiff::Timestamp>()
                .map_err(|_| format!("timestamp {} is not RFC 3339", echo(text)))
        })
        .transpose()
}

/// A string field; absent and `null` are `None`, another type an error.
fn string<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// An offending value as an error quotes it: escaped, so one line, and cut.
fn echo(text: &str) -> String {
    let cut: String = text.chars().take(ECHO_MAX_CHARS).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn one_line(message: &str) -> String {
    let line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    bounded(&line, MAX_ERROR_BYTES).to_string()
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
#[path = "vex_tests.rs"]
mod tests;
