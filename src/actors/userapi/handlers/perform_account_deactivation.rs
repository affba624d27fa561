//! `PerformAccountDeactivation`: the account can never be used again; with `erase`, it is
//! marked erased and the syncapi hears of it (`UserErased`).

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformAccountDeactivation, UserApiOutput};
use crate::actors::userapi::storage::{account_data, accounts, devices, profiles};
use crate::actors::userapi::{UserApiError, ACCOUNT_DATA_STREAM};

pub async fn handle(deps: &Deps, msg: PerformAccountDeactivation) -> Result<(), UserApiError> {
    let txn = deps.db.begin().await?;
    accounts::deactivate(&txn, &msg.localpart).await?;
    devices::delete_all(&txn, &msg.localpart, None).await?;
    profiles::set_display_name(&txn, &msg.localpart, None).await?;
    profiles::set_avatar_url(&txn, &msg.localpart, None).await?;
    account_data::delete_all(&txn, &msg.localpart).await?;
    let user_id = format!("@{}:{}", msg.localpart, deps.server_name);
    let output = UserApiOutput::DevicesDeleted {
        user_id: user_id.clone(),
        device_ids: None,
        except: None,
    };
    let mut appended =
        vec![crate::bus::append(&txn, ACCOUNT_DATA_STREAM, &user_id, &output).await?];
    if msg.erase {
        accounts::erase(&txn, &msg.localpart).await?;
        let erased = UserApiOutput::UserErased {
            user_id: user_id.clone(),
        };
        appended.push(crate::bus::append(&txn, ACCOUNT_DATA_STREAM, &user_id, &erased).await?);
    }
    deps.bus.commit(txn, &appended).await?;
    deps.tokens.forget_user(&msg.localpart);
    tracing::info!(localpart = %msg.localpart, erase = msg.erase, "account deactivated");
    Ok(())
}
