// Command hello is the Go binary of the test image app:1 (tests/realnode/make-images.sh).
// It exists to be found by trivy's gobinary analyzer: its build info names
// golang.org/x/text v0.3.7 (the fake CVE-2099-2001, fixed in 0.3.8) and the Go standard
// library (the fake CVE-2099-3001, fixed in "1.99.0"). It must really import x/text, or the
// module would not be in the build info.
package main

import (
	"fmt"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

func main() {
	fmt.Println(cases.Title(language.English).String("hello from the image-scanner test image"))
}
