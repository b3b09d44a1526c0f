module image-scanner.local/tests/realnode/pause

go 1.26.0
