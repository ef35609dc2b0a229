// MySQL/MariaDB wire-protocol constants, named as in the server sources and docs.

export const MAX_PACKET_PAYLOAD = 0xffffff;
export const HEADER_SIZE = 4;

// Commands (first payload byte of a client command packet).
export const COM_SLEEP = 0x00;
export const COM_QUIT = 0x01;
export const COM_INIT_DB = 0x02;
export const COM_QUERY = 0x03;
export const COM_FIELD_LIST = 0x04;
export const COM_CREATE_DB = 0x05;
export const COM_DROP_DB = 0x06;
export const COM_REFRESH = 0x07;
export const COM_SHUTDOWN = 0x08;
export const COM_STATISTICS = 0x09;
export const COM_PROCESS_INFO = 0x0a;
export const COM_CONNECT = 0x0b;
export const COM_PROCESS_KILL = 0x0c;
export const COM_DEBUG = 0x0d;
export const COM_PING = 0x0e;
export const COM_TIME = 0x0f;
export const COM_DELAYED_INSERT = 0x10;
export const COM_CHANGE_USER = 0x11;
export const COM_BINLOG_DUMP = 0x12;
export const COM_TABLE_DUMP = 0x13;
export const COM_CONNECT_OUT = 0x14;
export const COM_REGISTER_SLAVE = 0x15;
export const COM_STMT_PREPARE = 0x16;
export const COM_STMT_EXECUTE = 0x17;
export const COM_STMT_SEND_LONG_DATA = 0x18;
export const COM_STMT_CLOSE = 0x19;
export const COM_STMT_RESET = 0x1a;
export const COM_SET_OPTION = 0x1b;
export const COM_STMT_FETCH = 0x1c;
export const COM_DAEMON = 0x1d;
export const COM_BINLOG_DUMP_GTID = 0x1e;
export const COM_RESET_CONNECTION = 0x1f;
export const COM_STMT_BULK_EXECUTE = 0xfa;
/** MariaDB extended capability (bit 34 of the capabilities, bit 2 of the extended word): COM_STMT_BULK_EXECUTE */
export const MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 2;
/**
 * MariaDB extended capability (bit 35): column definitions carry a lenenc block of type details
 * (JSON, UUID, geometry types…) after their name fields.
 */
export const MARIADB_CLIENT_EXTENDED_METADATA = 1 << 3;
/**
 * MariaDB extended capability (bit 36; 10.6+): every column count packet carries one more byte,
 * "metadata follows" (0 or 1); at 0 the column definitions are left out, as the server does for a
 * COM_STMT_EXECUTE whose result columns it already sent on that connection.
 */
export const MARIADB_CLIENT_CACHE_METADATA = 1 << 4;
/** COM_STMT_BULK_EXECUTE flag: parameter types follow the flags */
export const BULK_SEND_TYPES_TO_SERVER = 128;

// Capability flags.
export const CLIENT_LONG_PASSWORD = 1 << 0; // MariaDB: CLIENT_MYSQL
export const CLIENT_FOUND_ROWS = 1 << 1;
export const CLIENT_LONG_FLAG = 1 << 2;
export const CLIENT_CONNECT_WITH_DB = 1 << 3;
export const CLIENT_NO_SCHEMA = 1 << 4;
export const CLIENT_COMPRESS = 1 << 5;
export const CLIENT_ODBC = 1 << 6;
export const CLIENT_LOCAL_FILES = 1 << 7;
export const CLIENT_IGNORE_SPACE = 1 << 8;
export const CLIENT_PROTOCOL_41 = 1 << 9;
export const CLIENT_INTERACTIVE = 1 << 10;
export const CLIENT_SSL = 1 << 11;
export const CLIENT_IGNORE_SIGPIPE = 1 << 12;
export const CLIENT_TRANSACTIONS = 1 << 13;
export const CLIENT_RESERVED = 1 << 14;
export const CLIENT_SECURE_CONNECTION = 1 << 15;
export const CLIENT_MULTI_STATEMENTS = 1 << 16;
export const CLIENT_MULTI_RESULTS = 1 << 17;
export const CLIENT_PS_MULTI_RESULTS = 1 << 18;
export const CLIENT_PLUGIN_AUTH = 1 << 19;
export const CLIENT_CONNECT_ATTRS = 1 << 20;
export const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21;
export const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22;
export const CLIENT_SESSION_TRACK = 1 << 23;
export const CLIENT_DEPRECATE_EOF = 1 << 24;
// Bits above 31 are not representable with JS bit operators; Ferry never offers them.

// Server status flags (OK / EOF packets).
export const SERVER_STATUS_IN_TRANS = 0x0001;
export const SERVER_STATUS_AUTOCOMMIT = 0x0002;
export const SERVER_MORE_RESULTS_EXISTS = 0x0008;
export const SERVER_QUERY_NO_GOOD_INDEX_USED = 0x0010;
export const SERVER_QUERY_NO_INDEX_USED = 0x0020;
export const SERVER_STATUS_CURSOR_EXISTS = 0x0040;
export const SERVER_STATUS_LAST_ROW_SENT = 0x0080;
export const SERVER_STATUS_DB_DROPPED = 0x0100;
export const SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200;
export const SERVER_STATUS_METADATA_CHANGED = 0x0400;
export const SERVER_QUERY_WAS_SLOW = 0x0800;
export const SERVER_PS_OUT_PARAMS = 0x1000;
export const SERVER_STATUS_IN_TRANS_READONLY = 0x2000;
export const SERVER_SESSION_STATE_CHANGED = 0x4000;

// Session state tracking entry types (OK packet, SERVER_SESSION_STATE_CHANGED).
export const SESSION_TRACK_SYSTEM_VARIABLES = 0x00;
export const SESSION_TRACK_SCHEMA = 0x01;
export const SESSION_TRACK_STATE_CHANGE = 0x02;
export const SESSION_TRACK_GTIDS = 0x03;
export const SESSION_TRACK_TRANSACTION_CHARACTERISTICS = 0x04;
export const SESSION_TRACK_TRANSACTION_STATE = 0x05;

// Response packet headers.
export const OK_HEADER = 0x00;
export const EOF_HEADER = 0xfe;
export const ERR_HEADER = 0xff;
export const LOCAL_INFILE_HEADER = 0xfb;

// COM_STMT_EXECUTE flags.
export const CURSOR_TYPE_NO_CURSOR = 0x00;
export const CURSOR_TYPE_READ_ONLY = 0x01;

// COM_SET_OPTION values.
export const MYSQL_OPTION_MULTI_STATEMENTS_ON = 0;
export const MYSQL_OPTION_MULTI_STATEMENTS_OFF = 1;

// Server error codes Ferry sends itself (docs: README, "Errors Ferry sends").
export const ER_CON_COUNT_ERROR = 1040;
export const ER_HANDSHAKE_ERROR = 1043;
export const ER_ACCESS_DENIED_ERROR = 1045;
export const ER_HOST_NOT_PRIVILEGED = 1130;
export const ER_NO_DB_ERROR = 1046;
export const ER_UNKNOWN_COM_ERROR = 1047;
export const ER_NET_PACKET_TOO_LARGE = 1153;
export const ER_NET_READ_ERROR = 1158;
export const ER_NET_PACKETS_OUT_OF_ORDER = 1156;
export const ER_NO_SUCH_THREAD = 1094;
export const ER_KILL_DENIED_ERROR = 1095;
export const ER_TOO_MANY_USER_CONNECTIONS = 1203;
export const ER_UNKNOWN_ERROR = 1105;
export const ER_UNKNOWN_STMT_HANDLER = 1243;
export const ER_MALFORMED_PACKET = 1835;
export const ER_FILTERED = 1148; // "The used command is not allowed with this MySQL version"
export const ER_USER_LIMIT_REACHED = 1226;
export const ER_NOT_SUPPORTED_AUTH_MODE = 1251;
export const ER_CONNECTION_KILLED = 1927;
export const ER_NEED_REPREPARE = 1615; // "Prepared statement needs to be re-prepared"
export const CR_SERVER_LOST = 2013;
export const FERRY_NO_BACKEND = 9001;

// Character sets / collations (id → name for the handshake).
export const UTF8MB4_GENERAL_CI = 45;
export const BINARY_COLLATION = 63;

export const NATIVE_PASSWORD = "mysql_native_password";
export const CACHING_SHA2_PASSWORD = "caching_sha2_password";
export const CLEAR_PASSWORD = "mysql_clear_password";
export const ED25519 = "client_ed25519"; // MariaDB's auth_ed25519
