/// The one version string of the home-server tools: `--version` of every tool, the
/// User-Agent of notifications, manifests' `toolVersion`, and the package version that
/// `scripts/package.sh` writes (it reads this line; keep the format `= "X.Y.Z"`).
package let homeServerVersion = "0.4.0"
