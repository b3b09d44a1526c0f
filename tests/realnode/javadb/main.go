// Command javadb writes the Java side of the real-scanner tests (tests/realnode): two JAR files
// for the test image java:1 and a small, offline trivy Java DB that identifies one of them.
//
//	javadb OUT_DIR
//
// writes
//
//	OUT_DIR/jars/log4j-core-2.14.1.jar  a JAR with META-INF/maven/.../pom.properties: trivy
//	                                    names it from the JAR itself
//	OUT_DIR/jars/vendored.jar           a JAR with neither pom.properties, manifest attributes
//	                                    nor a version in its name: only the Java DB's SHA-1
//	                                    index names it (com.fasterxml.jackson.core:
//	                                    jackson-databind 2.9.9), so a finding for it shows that
//	                                    the scan used the Java DB
//	OUT_DIR/java-db/trivy-java.db       the Java DB, written with trivy-java-db's own package
//	OUT_DIR/java-db/metadata.json       (the version trivy v0.74.0 pins), the layout trivy's
//	                                    --cache-dir expects under java-db/
//
// Everything is deterministic (fixed zip times, fixed metadata times), so the JARs' SHA-1 and
// the image digests built from them stay the same between runs.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/aquasecurity/trivy-java-db/pkg/db"
	"github.com/aquasecurity/trivy-java-db/pkg/types"

	// The database/sql driver trivy-java-db writes with (trivy links the same one).
	_ "modernc.org/sqlite"
)

// fixedTime is every zip entry's time and the Java DB's UpdatedAt/DownloadedAt; NextUpdate is
// 100 years later, so trivy never considers the DB stale.
var fixedTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const manifest = "Manifest-Version: 1.0\r\nCreated-By: tests/realnode/javadb\r\n\r\n"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: javadb OUT_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "javadb:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	log4j, err := jar(map[string]string{
		"META-INF/MANIFEST.MF": manifest,
		"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": "groupId=org.apache.logging.log4j\n" +
			"artifactId=log4j-core\nversion=2.14.1\n",
		"org/apache/logging/log4j/core/Logger.class": "not a real class",
	})
	if err != nil {
		return err
	}
	vendored, err := jar(map[string]string{
		"META-INF/MANIFEST.MF":                        manifest,
		"com/fasterxml/jackson/databind/Module.class": "not a real class",
	})
	if err != nil {
		return err
	}
	jars := filepath.Join(out, "jars")
	if err := os.MkdirAll(jars, 0o755); err != nil {
		return err
	}
	for name, content := range map[string][]byte{"log4j-core-2.14.1.jar": log4j, "vendored.jar": vendored} {
		if err := os.WriteFile(filepath.Join(jars, name), content, 0o644); err != nil {
			return err
		}
	}

	dir := filepath.Join(out, "java-db")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sum := sha1.Sum(vendored)
	javaDB, err := db.New(dir)
	if err != nil {
		return fmt.Errorf("open the Java DB: %w", err)
	}
	if err := javaDB.Init(); err != nil {
		return fmt.Errorf("create the Java DB tables: %w", err)
	}
	index := types.Index{GroupID: "com.fasterxml.jackson.core", ArtifactID: "jackson-databind",
		Version: "2.9.9", SHA1: sum[:], ArchiveType: types.JarType}
	if err := javaDB.InsertIndexes([]types.Index{index}); err != nil {
		return fmt.Errorf("insert the SHA-1 index: %w", err)
	}
	if err := javaDB.Close(); err != nil {
		return fmt.Errorf("close the Java DB: %w", err)
	}
	meta := db.NewMetadata(dir)
	return meta.Update(db.Metadata{Version: db.SchemaVersion, NextUpdate: fixedTime.Add(100 * 365 * 24 * time.Hour),
		UpdatedAt: fixedTime, DownloadedAt: fixedTime})
}

// jar returns a zip archive of the files, in name order, with fixed times.
func jar(files map[string]string) ([]byte, error) {
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, name := range names {
		f, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: fixedTime})
		if err != nil {
			return nil, err
		}
		if _, err := f.Write([]byte(files[name])); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
