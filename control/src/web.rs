//! The browser client, compiled into the binary so `bridgemesh up` needs no files on disk.

pub const INDEX_HTML: &str = include_str!("../web/index.html");
pub const APP_JS: &str = include_str!("../web/app.js");
/// The meeting's tiles and their layout (loaded before `app.js`, which builds it).
pub const TILES_JS: &str = include_str!("../web/tiles.js");
pub const STYLE_CSS: &str = include_str!("../web/style.css");
/// Chat, raised hands and reactions (loaded after `app.js`).
pub const MEETING_JS: &str = include_str!("../web/meeting.js");
pub const SIMULCAST_JS: &str = include_str!("../web/simulcast.js");
pub const MEETING_CSS: &str = include_str!("../web/meeting.css");
/// End-to-end encryption (`docs/e2ee.md`): the page's part (loaded after `app.js`), the frame
/// format and keys (page, worker and node's tests), and the worker that transforms every frame.
pub const E2EE_JS: &str = include_str!("../web/e2ee.js");
pub const E2EE_CSS: &str = include_str!("../web/e2ee.css");
pub const SFRAME_JS: &str = include_str!("../web/sframe.js");
pub const E2EE_WORKER_JS: &str = include_str!("../web/e2ee-worker.js");
/// The recording indicator and the moderators' record button (loaded after `app.js`).
pub const RECORDING_JS: &str = include_str!("../web/recording.js");
pub const RECORDING_CSS: &str = include_str!("../web/recording.css");
/// Host login, invite links and the host-only messages (`docs/hosts.md`).
pub const HOSTS_JS: &str = include_str!("../web/hosts.js");
