/// The release of this build: `chime --version`, `serve`'s banner, `/health` and the
/// server name a hello reply carries. Raised with each issue that changes what users see.
public enum ChimeVersion {
    public static let current = "0.15.0"
}
