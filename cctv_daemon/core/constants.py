"""Every default and fixed name of the daemon. This module imports nothing."""

# Exit codes of the command line (documented in README.md).
EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2  # bad usage or bad config
EXIT_ALREADY_RUNNING = 3
EXIT_NOT_RUNNING = 4
EXIT_TIMEOUT = 5
EXIT_CHECK_PROBLEMS = 6  # `check`: problems remain (found and not repaired)
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as a shell reports it

# Camera defaults.
DEFAULT_VIDEO_DURATION_S = 600
DEFAULT_RTSP_PORT = 554
DEFAULT_STALL_TIMEOUT_S = 10.0
DEFAULT_BACKOFF_BASE_S = 1.0
DEFAULT_BACKOFF_CAP_S = 30.0
DEFAULT_STEADY_AFTER_S = 60.0  # backoff resets only after recording this long
DEFAULT_STOP_TIMEOUT_S = 5.0  # polite stop of ffmpeg, then SIGKILL
SECOND_STOP_SIGNAL_AFTER_S = 1.0  # ffmpeg's first SIGTERM does not interrupt blocking I/O (a stalled socket); a
# second one does, and ffmpeg still finalizes the segment
BACKOFF_JITTER = 0.2  # +/- fraction of the delay
RTSP_SOCKET_TIMEOUT_S = 5.0  # ffmpeg gives up on a silent socket after ~2x this
PROGRESS_PERIOD_S = 1.0
PIPE_COALESCE_S = 0.5  # the one thread reading every ffmpeg's pipes reads progress reports at most this often
# ... unless every camera's stallTimeout allows a longer window: stallTimeout / PIPE_WINDOW_STALL_FRACTION, at most
# PIPE_WINDOW_MAX_S (recording/pipe_hub.py window_for: 1 s, half the wake-ups, at the default 10 s stallTimeout)
PIPE_WINDOW_STALL_FRACTION = 8
PIPE_WINDOW_MAX_S = 1.0
# A run's anchor (wall time of its media time 0) is measured from the progress reports of its first seconds of
# media (recording/camera.py); over those, ffmpeg's progress is read at once (not coalesced).
ANCHOR_WINDOW_US = 10_000_000
# ffmpeg analyses 3 s of a live stream by default before it starts writing; 1 s (a GOP of most cameras) is enough
# with the codecs known from the SDP and cuts ~2 s from every (re)connect.
RTSP_ANALYZE_DURATION_US = 1_000_000
SUPERVISOR_TICK_S = 0.2  # main loop period while a camera starts or stops
IDLE_TICK_S = 2.0  # at most this long between ticks when all cameras record (signals, exits wake it sooner)
ANCHOR_TICK_S = 1.0  # ... but this often while a run's anchor is being measured (its first seconds of media)

# Transcoding (only when frameRate/resolution are set, or for the test source).
X264_PRESET = "veryfast"
AAC_BITRATE = "64k"
MP4_COPYABLE_AUDIO = ("aac", "mp3", "opus", "alac", "ac3", "eac3", "flac")

# Storage layout.
STATE_DIRNAME = ".cctv"
STAGING_DIRNAME = "staging"
STAGING_LISTS_DIRNAME = ".lists"  # ffmpeg's segment lists, apart from the segments (camera names never start with ".")
LOG_DIRNAME = "logs"
DAMAGED_DIRNAME = "damaged"  # quarantined segments ({savePath}/.cctv) and catalogs moved aside ({stateDir})
CATALOG_FILENAME = "catalog.sqlite3"
LOCK_FILENAME = "cctv-daemon.lock"
STATUS_FILENAME = "status.json"
CONTROL_DIRNAME = "control"
LOG_FILENAME = "cctv-daemon.log"
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_BACKUP_COUNT = 5
SEGMENT_EXT = ".mp4"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # UTC, sortable, Windows-safe
DATE_DIR_FORMAT = "%Y-%m-%d"
DEFAULT_MIN_FREE_GB = 1.0

# Uploads.
DEFAULT_MAX_CONCURRENT_UPLOADS = 4  # bench/upload.py: 0.96 of a bare boto3 loop with 4, 0.81 with 2
DEFAULT_MULTIPART_THRESHOLD_MB = 16
UPLOAD_BACKOFF_BASE_S = 1.0
UPLOAD_BACKOFF_CAP_S = 300.0
DEFAULT_UPLOAD_MAX_ATTEMPTS = 20  # s3Config.maxAttempts: failures of one object before it is `failed`

REDACTED = "***"

# Running as a service (lock, status, control channel, systemd, Task Scheduler).
SERVICE_NAME = "cctv-daemon"
STATUS_PERIOD_S = 5.0  # status.json is rewritten this often (and at once when a camera's state changes)
STATUS_STALE_S = 15.0  # older than this: the daemon is not running (or hung)
STATUS_SCHEMA = 1
DEFAULT_STOP_WAIT_S = 30.0  # `cctv-daemon stop --timeout`
LOCK_RETRY_S = 0.5  # a status probe may hold a shared lock for microseconds
SERVICE_USER = "cctv"
SYSTEMD_WATCHDOG_S = 30
SYSTEMD_STOP_TIMEOUT_S = 45
TASK_RESTART_INTERVAL = "PT1M"
TASK_RESTART_COUNT = 999
TASK_REPEAT_INTERVAL = "PT5M"  # the boot trigger repeats: a dead daemon is started again within 5 min

DEFAULT_MULTIPART_CHUNK_MB = 8  # part size of multipart uploads (the local ETag computation uses the same)
UPLOAD_PART_CONCURRENCY = 4  # threads per multipart upload
UPLOAD_STOP_GRACE_S = 3.0  # on shutdown: keep uploading this long, then cancel what is in flight
UPLOAD_CANCEL_JOIN_S = 2.0
UPLOAD_IDLE_WAIT_S = 1.0  # a worker with nothing to do looks again after this (or when woken)
UPLOAD_CONNECT_TIMEOUT_S = 5.0
UPLOAD_READ_TIMEOUT_S = 30.0
UPLOAD_BOTO_MAX_ATTEMPTS = 2  # botocore's own quick retries; the uploader's backoff does the long ones
UPLOAD_BACKOFF_ENV = "CCTV_UPLOAD_BACKOFF_S"  # "BASE,CAP" overrides the two constants above (tests, tuning)
SHA256_METADATA_KEY = "sha256"  # x-amz-meta-sha256 on every uploaded object

# HTTP API (cctv_daemon/api)
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8080
DEFAULT_LEASE_S = 15.0  # fleet.leaseSeconds: a camera lease lasts this long unless renewed (every 1/5 of it)
API_INFO_FILENAME = "api.json"  # {stateDir}/api.json: where the running daemon's API listens (read by the CLI)
API_TOKENS_FILENAME = "api-tokens.json"  # {stateDir}/api-tokens.json, 0600: viewer + admin tokens, signing key
API_AUDIT_FILENAME = "audit.jsonl"  # {stateDir}/audit.jsonl: who stopped/started/recorded/deleted what, when
CAMERA_CHOICES_FILENAME = "camera-choices.json"  # {stateDir}/: cameras stopped through the API/CLI
LOST_ACK_FILENAME = "lost-ack.json"  # {stateDir}/: footage lost before this time was acknowledged (ack-lost)
