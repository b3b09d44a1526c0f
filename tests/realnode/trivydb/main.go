// Command trivydb writes a small, offline trivy vulnerability DB for the real-scanner tests
// (tests/realnode): OUT_DIR/db/trivy.db and OUT_DIR/db/metadata.json, the layout trivy's
// --cache-dir expects.
//
//	trivydb [--variant base|updated] OUT_DIR
//	trivydb --dump OUT_DIR        (print every bucket, to debug the fixture)
//
// It writes the advisories with trivy-db's own packages, exactly the way trivy-db's Debian,
// GHSA and Go vulndb sources do (PutAdvisoryDetail / PutVulnerabilityDetail /
// PutVulnerabilityID / PutDataSource), then lets trivy-db's real build step
// (vulndb.New(...).Build) normalise them: advisory-detail -> per-platform buckets,
// vulnerability-detail -> the `vulnerability` bucket, cleanup, metadata.json. So the DB has
// the schema trivy v0.74.0 reads, with only the fake advisories below. The expected findings
// are in tests/realnode/expected/; change both together.
//
// Times come from a fixed clock so that two runs write the same metadata.
//
// Note: trivy-db's ghsa package (linked in through vulnsrc.All) runs `go list std` in its init,
// so the `go` tool must be on PATH when this program runs.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy-db/pkg/vulndb"
	"github.com/aquasecurity/trivy-db/pkg/vulnsrc"
	"github.com/aquasecurity/trivy-db/pkg/vulnsrc/bucket"
	"github.com/aquasecurity/trivy-db/pkg/vulnsrc/vulnerability"
)

// sourceName is the name of the fake vulnsrc.VulnSrc given to vulndb.Build.
const sourceName types.SourceID = "image-scanner-fake"

// fixedTime is UpdatedAt and DownloadedAt; NextUpdate is 100 years later, so trivy never
// considers the DB stale (the server runs with --skip-db-update anyway, and the in-cluster
// server without it must not try to download either).
var fixedTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const updateInterval = 100 * 365 * 24 * time.Hour

// Data sources, as trivy-db's sources name them.
var (
	debianSource = types.DataSource{
		ID:   vulnerability.Debian,
		Name: "Debian Security Tracker",
		URL:  "https://salsa.debian.org/security-tracker-team/security-tracker",
	}
	ghsaNpmSource = types.DataSource{
		ID:   vulnerability.GHSA,
		Name: "GitHub Security Advisory npm",
		URL:  "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Anpm",
	}
	ghsaMavenSource = types.DataSource{
		ID:   vulnerability.GHSA,
		Name: "GitHub Security Advisory Maven",
		URL:  "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Amaven",
	}
	ghsaGoSource = types.DataSource{
		ID:   vulnerability.GHSA,
		Name: "GitHub Security Advisory Go",
		URL:  "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Ago",
	}
	// trivy-db takes Go stdlib advisories from the Go vulnerability database (its ghsa source
	// skips standard-library packages).
	goVulnDBSource = types.DataSource{
		ID:   vulnerability.GoVulnDB,
		Name: "The Go Vulnerability Database",
		URL:  "https://pkg.go.dev/vuln/",
	}
)

// osAdvisory is one Debian security-tracker entry for a source package of Debian 12.
type osAdvisory struct {
	id, srcPkg string
	fixed      string         // empty: no fix
	status     types.Status   // only without a fix
	pkgSev     types.Severity // Debian's package-specific urgency; unknown: none
	title      string
	nvdSev     types.Severity
	nvdScore   float64
}

// langAdvisory is one GHSA / Go vulndb entry.
type langAdvisory struct {
	id, pkg    string
	src        types.DataSource
	bucket     func(types.DataSource) (bucket.DataSourceBucket, error)
	vulnerable string
	patched    string
	title      string
	sev        types.Severity // GHSA severity; for govulndb (no severity of its own) NVD's
}

var baseOS = []osAdvisory{
	{id: "CVE-2099-1001", srcPkg: "openssl", fixed: "3.0.99-1~deb12u1",
		title: "openssl: fake fixed issue for the test", nvdSev: types.SeverityCritical, nvdScore: 9.8},
	// Debian's package-specific severity (HIGH) wins over NVD's (MEDIUM) in trivy: the expected
	// HIGH shows that this path works.
	{id: "CVE-2099-1002", srcPkg: "zlib", status: types.StatusWillNotFix, pkgSev: types.SeverityHigh,
		title: "zlib: fake unfixed issue (will not fix)", nvdSev: types.SeverityMedium, nvdScore: 5.3},
	// Fixed below the installed 3.0.11-1~deb12u2: must not be reported.
	{id: "CVE-2099-1003", srcPkg: "openssl", fixed: "3.0.1-1",
		title: "openssl: old issue, already fixed", nvdSev: types.SeverityMedium, nvdScore: 5.0},
}

// updatedOS is what the `updated` variant adds, to test a rescan after a DB change.
var updatedOS = []osAdvisory{
	{id: "CVE-2099-1004", srcPkg: "bash", fixed: "5.2.99-1",
		title: "bash: fake issue added by a DB update", nvdSev: types.SeverityLow, nvdScore: 3.1},
}

var baseLang = []langAdvisory{
	{id: "GHSA-fake-lodash-0001", pkg: "lodash", src: ghsaNpmSource, bucket: bucket.NewNpm,
		vulnerable: "<4.17.21", patched: "4.17.21", title: "lodash: fake prototype pollution", sev: types.SeverityHigh},
	{id: "GHSA-fake-minimist-0001", pkg: "minimist", src: ghsaNpmSource, bucket: bucket.NewNpm,
		vulnerable: "<1.2.6", patched: "1.2.6", title: "minimist: fake prototype pollution", sev: types.SeverityCritical},
	{id: "CVE-2099-2001", pkg: "golang.org/x/text", src: ghsaGoSource, bucket: bucket.NewGo,
		vulnerable: "<0.3.8", patched: "0.3.8", title: "golang.org/x/text: fake issue", sev: types.SeverityMedium},
	// Maven packages are "groupId:artifactId". log4j-core names itself (pom.properties in the
	// JAR); jackson-databind is known only from the Java DB's SHA-1 index (tests/realnode/javadb).
	{id: "CVE-2021-44228", pkg: "org.apache.logging.log4j:log4j-core", src: ghsaMavenSource, bucket: bucket.NewMaven,
		vulnerable: ">=2.0-beta9, <2.15.0", patched: "2.15.0", title: "log4j-core: fake Log4Shell entry", sev: types.SeverityCritical},
	{id: "CVE-2099-4001", pkg: "com.fasterxml.jackson.core:jackson-databind", src: ghsaMavenSource, bucket: bucket.NewMaven,
		vulnerable: "<2.9.10", patched: "2.9.10", title: "jackson-databind: fake issue", sev: types.SeverityHigh},
	{id: "CVE-2099-3001", pkg: "stdlib", src: goVulnDBSource, bucket: bucket.NewGo,
		vulnerable: "<1.99.0", patched: "1.99.0", title: "stdlib: fake issue in every Go binary", sev: types.SeverityHigh},
}

const cvssCritical = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"

// fakeSource is the vulnsrc.VulnSrc that vulndb.Build runs.
type fakeSource struct {
	dbc  db.Config
	os   []osAdvisory
	lang []langAdvisory
}

func (fakeSource) Name() types.SourceID { return sourceName }

func (s fakeSource) Update(string) error {
	return s.dbc.BatchUpdate(func(tx *bolt.Tx) error {
		for _, a := range s.os {
			if err := s.putOS(tx, a); err != nil {
				return fmt.Errorf("%s: %w", a.id, err)
			}
		}
		for _, a := range s.lang {
			if err := s.putLang(tx, a); err != nil {
				return fmt.Errorf("%s: %w", a.id, err)
			}
		}
		return nil
	})
}

// putOS writes what trivy-db's debian source writes, plus the NVD detail its nvd source adds.
func (s fakeSource) putOS(tx *bolt.Tx, a osAdvisory) error {
	platform := bucket.NewDebian("12").Name() // "debian 12"
	adv := &types.Advisory{FixedVersion: a.fixed, Severity: a.pkgSev}
	if a.fixed == "" {
		adv.Status = a.status
	}
	// A pointer, as trivy-db's debian source passes it: only then does Advisory.MarshalJSON
	// store the Status.
	if err := s.dbc.PutAdvisoryDetail(tx, a.id, a.srcPkg, []string{platform}, adv); err != nil {
		return err
	}
	if err := s.dbc.PutVulnerabilityDetail(tx, a.id, vulnerability.Debian,
		types.VulnerabilityDetail{Title: a.title}); err != nil {
		return err
	}
	if err := s.dbc.PutVulnerabilityDetail(tx, a.id, vulnerability.NVD, types.VulnerabilityDetail{
		ID:           a.id,
		Title:        a.title,
		Description:  "A fake vulnerability for the image-scanner real-scanner tests.",
		SeverityV3:   a.nvdSev,
		CvssScoreV3:  a.nvdScore,
		CvssVectorV3: cvssCritical,
		References:   []string{"https://example.invalid/" + a.id},
	}); err != nil {
		return err
	}
	if err := s.dbc.PutVulnerabilityID(tx, a.id); err != nil {
		return err
	}
	return s.dbc.PutDataSource(tx, platform, debianSource)
}

// putLang writes what trivy-db's OSV-based sources (ghsa, govulndb) write.
func (s fakeSource) putLang(tx *bolt.Tx, a langAdvisory) error {
	bkt, err := a.bucket(a.src)
	if err != nil {
		return err
	}
	if err := s.dbc.PutDataSource(tx, bkt.Name(), bkt.DataSource()); err != nil {
		return err
	}
	adv := types.Advisory{VulnerableVersions: []string{a.vulnerable}, PatchedVersions: []string{a.patched}}
	if err := s.dbc.PutAdvisoryDetail(tx, a.id, a.pkg, []string{bkt.Name()}, adv); err != nil {
		return err
	}
	detail := types.VulnerabilityDetail{
		Title:      a.title,
		References: []string{"https://example.invalid/" + a.id},
	}
	if a.src.ID == vulnerability.GoVulnDB {
		// The Go vulndb has no severities; trivy then falls back to NVD's.
		if err := s.dbc.PutVulnerabilityDetail(tx, a.id, vulnerability.GoVulnDB, detail); err != nil {
			return err
		}
		detail.SeverityV3 = a.sev
		if err := s.dbc.PutVulnerabilityDetail(tx, a.id, vulnerability.NVD, detail); err != nil {
			return err
		}
	} else {
		detail.Severity = a.sev
		if err := s.dbc.PutVulnerabilityDetail(tx, a.id, a.src.ID, detail); err != nil {
			return err
		}
	}
	return s.dbc.PutVulnerabilityID(tx, a.id)
}

func build(outDir, variant string) error {
	src := fakeSource{os: baseOS, lang: baseLang}
	switch variant {
	case "base":
	case "updated":
		src.os = append(append([]osAdvisory{}, baseOS...), updatedOS...)
	default:
		return fmt.Errorf("unknown --variant %q (expected base or updated)", variant)
	}
	dbDir := filepath.Join(outDir, "db")
	// Start from nothing: bbolt would otherwise add to an old file.
	for _, f := range []string{db.Path(dbDir), metadata.Path(dbDir)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := db.Init(dbDir); err != nil {
		return err
	}
	defer db.Close()

	clock := clocktesting.NewFakeClock(fixedTime)
	vdb := vulndb.New(dbDir, dbDir, updateInterval,
		vulndb.WithVulnSrcs(map[types.SourceID]vulnsrc.VulnSrc{sourceName: src}),
		vulndb.WithClock(clock))
	if err := vdb.Build([]string{string(sourceName)}); err != nil {
		return err
	}
	// trivy fills DownloadedAt when it downloads a DB; a fixed value keeps the file stable.
	mc := metadata.NewClient(dbDir)
	md, err := mc.Get()
	if err != nil {
		return err
	}
	md.DownloadedAt = fixedTime
	return mc.Update(md)
}

// dump prints every key of every bucket (nested buckets as "a / b -> key = value"), sorted.
func dump(outDir string) error {
	bdb, err := bolt.Open(db.Path(filepath.Join(outDir, "db")), 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer bdb.Close()
	var lines []string
	var walk func(path []string, b *bolt.Bucket) error
	walk = func(path []string, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(append(append([]string{}, path...), string(k)), b.Bucket(k))
			}
			lines = append(lines, fmt.Sprintf("%s -> %s = %s", strings.Join(path, " / "), k, v))
			return nil
		})
	}
	err = bdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walk([]string{string(name)}, b)
		})
	})
	if err != nil {
		return err
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	md, err := metadata.NewClient(filepath.Join(outDir, "db")).Get()
	if err != nil {
		return err
	}
	out, err := json.Marshal(md)
	if err != nil {
		return err
	}
	fmt.Printf("metadata.json = %s\n", out)
	return nil
}

func main() {
	variant := flag.String("variant", "base", "advisory set: base, or updated (base + CVE-2099-1004 in bash)")
	doDump := flag.Bool("dump", false, "print the DB in OUT_DIR instead of writing one")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: trivydb [--variant base|updated] OUT_DIR\n       trivydb --dump OUT_DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if *doDump {
		err = dump(flag.Arg(0))
	} else {
		err = build(flag.Arg(0), *variant)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "trivydb: %v\n", err)
		os.Exit(1)
	}
}
