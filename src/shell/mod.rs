//! The I/O shell: watches the Kubernetes API, turns objects into core observations, executes the
//! core's commands (server-side apply with field manager `image-scanner-operator`), runs leader
//! election and serves the HTTP endpoints. It holds no decisions of its own.
