//! The userapi's whole public API. Users are named by localpart: the userapi serves the
//! accounts of this server only.

use super::error::UserApiError;
use actix::Message;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Replies

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenOwner {
    /// Full user ID, `@localpart:server`.
    pub user_id: String,
    pub localpart: String,
    pub device_id: String,
    pub is_guest: bool,
}

/// What an access token is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenLookup {
    Valid(TokenOwner),
    /// It was valid but its lifetime is over: the client should refresh (soft logout).
    Expired,
    /// Never issued, or revoked (logout, deletion, deactivation, refresh).
    Unknown,
}

/// A freshly issued session: the tokens are returned once and stored only as hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSession {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    /// Present when the client asked for a refresh token.
    pub refresh_token: Option<String>,
    /// Lifetime of `access_token` in ms; `None`: it does not expire.
    pub expires_in_ms: Option<u64>,
}

/// The result of checking a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordCheck {
    /// The password is right; the account's full user ID, and a fingerprint of the password
    /// it matched (for `PerformDeviceCreation::password_fingerprint`).
    Valid {
        user_id: String,
        password_fingerprint: String,
    },
    /// No such account, or the wrong password: callers must not tell which.
    Invalid,
    /// The password is right, but the account is deactivated.
    Deactivated,
}

/// A device of a user, as `GET /devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
}

/// A user's global profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// A profile field that can be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

// ---------------------------------------------------------------------------------------------
// Queries: no side effects, safe to retry.

/// Who owns an access token (the hot path of every authenticated request).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<TokenLookup, UserApiError>")]
pub struct QueryAccessToken {
    pub access_token: String,
}

/// Whether a localpart is free to register. Deactivated accounts keep their name.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<bool, UserApiError>")]
pub struct QueryAccountAvailability {
    pub localpart: String,
}

/// Whether `password` is the account's password. Hashing runs off the async executor.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<PasswordCheck, UserApiError>")]
pub struct QueryPasswordCheck {
    pub localpart: String,
    pub password: String,
}

/// Every device of a user, ordered by device ID. Empty for an unknown user.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<DeviceInfo>, UserApiError>")]
pub struct QueryDevices {
    pub localpart: String,
}

/// One device of a user; `None` when the user has no such device.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<DeviceInfo>, UserApiError>")]
pub struct QueryDevice {
    pub localpart: String,
    pub device_id: String,
}

/// A user's profile; `None` when there is no such (active or deactivated) account.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Profile>, UserApiError>")]
pub struct QueryProfile {
    pub localpart: String,
}

/// One piece of account data (a JSON object, as text); `None` when not set.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<String>, UserApiError>")]
pub struct QueryAccountData {
    pub localpart: String,
    /// `None` for global account data.
    pub room_id: Option<String>,
    pub data_type: String,
}

/// A stored filter (JSON text); `None` when the user has no filter with that ID.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<String>, UserApiError>")]
pub struct QueryFilter {
    pub localpart: String,
    pub filter_id: String,
}

// ---------------------------------------------------------------------------------------------
// Performs: synchronous changes.

/// Creates an account (and its empty profile). Fails with `UserInUse` when the localpart is
/// taken, even by a deactivated account.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformAccountCreation {
    pub localpart: String,
    /// `None`: the account cannot log in with a password (guests).
    pub password: Option<String>,
    pub is_guest: bool,
    /// The initial display name; `None`: none.
    pub display_name: Option<String>,
}

/// Starts a session: creates the device (or reuses the user's existing device of that ID)
/// and issues its access token, replacing any earlier token of that device.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<NewSession, UserApiError>")]
pub struct PerformDeviceCreation {
    pub localpart: String,
    /// `None`: a new random device ID.
    pub device_id: Option<String>,
    /// Only used when the device is new.
    pub display_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether to issue a refresh token, and with it an expiring access token.
    pub refresh_token: bool,
    /// For a password login: the fingerprint `QueryPasswordCheck` returned. The session is
    /// refused (`CredentialsChanged`) if the password changed since, so a login racing a
    /// password change cannot outlive it.
    pub password_fingerprint: Option<String>,
}

/// Trades a refresh token for a new access token and refresh token; the old ones die.
/// Fails with `UnknownToken` for a refresh token that is not current.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<NewSession, UserApiError>")]
pub struct PerformTokenRefresh {
    pub refresh_token: String,
}

/// Sets a new password; optionally logs out every device but `keep_device`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformPasswordUpdate {
    pub localpart: String,
    pub new_password: String,
    pub logout_devices: bool,
    pub keep_device: Option<String>,
}

/// Deactivates an account for good: every device and token is deleted, the password
/// removed, the profile emptied; the name stays taken.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformAccountDeactivation {
    pub localpart: String,
    /// Also erase the account (the spec's account erasure): announced as `UserErased`.
    #[serde(default)]
    pub erase: bool,
}

/// Renames a device. Fails with `NotFound` when the user has no such device.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformDeviceUpdate {
    pub localpart: String,
    pub device_id: String,
    /// `None` removes the display name.
    pub display_name: Option<String>,
}

/// Deletes devices and their tokens (logout). Unknown device IDs are ignored.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformDeviceDeletion {
    pub localpart: String,
    /// `None`: every device of the user.
    pub device_ids: Option<Vec<String>>,
    /// A device to spare even when `device_ids` is `None`.
    pub except: Option<String>,
}

/// Sets or clears one profile field. Fails with `NotFound` for an unknown user.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformProfileUpdate {
    pub localpart: String,
    pub field: ProfileField,
    pub value: Option<String>,
}

/// Stores one piece of account data, replacing what was there.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformAccountDataUpdate {
    pub localpart: String,
    /// `None` for global account data.
    pub room_id: Option<String>,
    pub data_type: String,
    /// A JSON object, as text.
    pub content: String,
}

/// Sets (`content` given) or removes one tag of a room in the user's `m.tag` room account
/// data, in one transaction.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformRoomTagUpdate {
    pub localpart: String,
    pub room_id: String,
    pub tag: String,
    /// The tag's content (e.g. `{"order": 0.5}`), or `None` to remove the tag.
    pub content: Option<serde_json::Value>,
}

/// Who an OpenID token (from `PerformOpenIdTokenCreation`) belongs to: the localpart, or
/// `None` when the token is unknown or expired.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<String>, UserApiError>")]
pub struct QueryOpenIdToken {
    pub token: String,
}

/// Issues an OpenID token for a user, valid for `lifetime_ms`; expired tokens are swept.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<String, UserApiError>")]
pub struct PerformOpenIdTokenCreation {
    pub localpart: String,
    pub lifetime_ms: u64,
}

/// Turns a guest account into a full account with a password, keeping its user ID (and so
/// its rooms and data). `NotFound` when the localpart is no active guest account. The guest's
/// access tokens stay valid and now act for the full account.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformGuestUpgrade {
    pub localpart: String,
    pub password: String,
}

/// A room was upgraded: the user's tags of the old room, its place in `m.direct` and the
/// push rules naming it are copied to the new room, in one transaction.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformRoomUpgradeCopy {
    pub localpart: String,
    pub old_room_id: String,
    pub new_room_id: String,
}

/// A user's effective push rules (`crate::push_rules::effective`): the server defaults with
/// the user's own rules and changes merged in.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ruma::push::Ruleset, UserApiError>")]
pub struct QueryPushRules {
    pub localpart: String,
}

/// Changes one push rule of a user, in one transaction holding their `m.push_rules` account
/// data, and announces the new rule set on the `userapi` stream. `NotFound` when the rule (or
/// for `Delete`, a user-defined rule) does not exist; `BadRequest` for a rule that cannot be
/// placed or set as asked.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct PerformPushRuleUpdate {
    pub localpart: String,
    pub change: PushRuleChange,
}

/// One change to a user's push rules. Externally tagged: ruma's push types deserialize from
/// JSON text only, not from the buffered content an internally tagged enum would give them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushRuleChange {
    /// Adds or replaces a user-defined rule. `conditions` for override and underride rules,
    /// `pattern` for content rules; room and sender rules match their rule ID. `before` and
    /// `after` name user-defined rules of the same kind to place it next to.
    Set {
        kind: ruma::push::RuleKind,
        rule_id: String,
        actions: Vec<ruma::push::Action>,
        conditions: Option<Vec<ruma::push::PushCondition>>,
        pattern: Option<String>,
        before: Option<String>,
        after: Option<String>,
    },
    /// Removes a user-defined rule (server-default rules cannot be removed).
    Delete {
        kind: ruma::push::RuleKind,
        rule_id: String,
    },
    /// Enables or disables a rule.
    Enabled {
        kind: ruma::push::RuleKind,
        rule_id: String,
        enabled: bool,
    },
    /// Replaces a rule's actions.
    Actions {
        kind: ruma::push::RuleKind,
        rule_id: String,
        actions: Vec<ruma::push::Action>,
    },
}

/// What the userapi publishes on its stream (`userapi`), keyed by user ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserApiOutput {
    /// A piece of account data changed.
    AccountData {
        user_id: String,
        /// `None` for global account data.
        room_id: Option<String>,
        data_type: String,
        content: serde_json::Value,
    },
    /// The account was erased: its events are no longer shown to users who were not in the
    /// room when they were sent.
    UserErased { user_id: String },
    /// Devices were deleted: `device_ids`, or (`None`) all the user's devices but `except`.
    DevicesDeleted {
        user_id: String,
        device_ids: Option<Vec<String>>,
        except: Option<String>,
    },
}

/// Stores a filter and returns its new ID.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<String, UserApiError>")]
pub struct PerformFilterCreation {
    pub localpart: String,
    /// The filter definition, JSON text.
    pub filter: String,
}

// ---------------------------------------------------------------------------------------------
// Inputs: changes whose caller does not wait for them.

/// A request was made with this device's token: keeps `last_seen_ip`/`last_seen_ts` current.
/// Writes are coalesced (at most one per device per minute unless the IP changes).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), UserApiError>")]
pub struct InputDeviceActivity {
    pub localpart: String,
    pub device_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

crate::remote_messages!("userapi":
    QueryAccessToken,
    QueryAccountAvailability,
    QueryPasswordCheck,
    QueryDevices,
    QueryDevice,
    QueryProfile,
    QueryAccountData,
    QueryFilter,
    QueryPushRules,
    QueryOpenIdToken,
    PerformAccountCreation,
    PerformDeviceCreation,
    PerformTokenRefresh,
    PerformPasswordUpdate,
    PerformAccountDeactivation,
    PerformDeviceUpdate,
    PerformDeviceDeletion,
    PerformProfileUpdate,
    PerformAccountDataUpdate,
    PerformRoomTagUpdate,
    PerformFilterCreation,
    PerformPushRuleUpdate,
    PerformOpenIdTokenCreation,
    PerformGuestUpgrade,
    PerformRoomUpgradeCopy,
    InputDeviceActivity,
);
