//! Reads the userapi's stream: account data into `syncapi_account_data` (waking the user),
//! deleted devices, whose queued to-device messages go, and erased users.

use super::super::notifier::{Advance, Notifier};
use super::super::storage::{account_data, erased_users, to_device};
use super::super::token::Stream;
use crate::actors::userapi::messages::UserApiOutput;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::Txn;
use actix::Addr;

/// The syncapi's consumer of the `userapi` stream.
pub struct UserApiConsumer {
    notifier: Option<Addr<Notifier>>,
    users: Vec<String>,
    /// The syncapi's in-memory set of erased users, added to once a batch is committed.
    erased: crate::actors::syncapi::visibility::ErasedUsers,
    newly_erased: Vec<String>,
}

impl UserApiConsumer {
    pub fn new(
        notifier: Option<Addr<Notifier>>,
        erased: crate::actors::syncapi::visibility::ErasedUsers,
    ) -> UserApiConsumer {
        UserApiConsumer {
            notifier,
            users: Vec::new(),
            erased,
            newly_erased: Vec::new(),
        }
    }
}

impl Consumer for UserApiConsumer {
    type Output = UserApiOutput;
    const STREAM: &'static str = crate::actors::userapi::ACCOUNT_DATA_STREAM;
    const NAME: &'static str = "syncapi.userapi";

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        output: UserApiOutput,
    ) -> Result<(), ConsumerError> {
        let (user_id, room_id, data_type, content) = match output {
            UserApiOutput::AccountData {
                user_id,
                room_id,
                data_type,
                content,
            } => (user_id, room_id, data_type, content),
            UserApiOutput::UserErased { user_id } => {
                erased_users::insert(txn, &user_id, position).await?;
                self.newly_erased.push(user_id);
                return Ok(());
            }
            UserApiOutput::DevicesDeleted {
                user_id,
                device_ids,
                except,
            } => {
                match device_ids {
                    Some(ids) => {
                        for id in ids.iter().filter(|id| Some(*id) != except.as_ref()) {
                            to_device::delete_device(txn, &user_id, id).await?;
                        }
                    }
                    None => to_device::delete_all_but(txn, &user_id, except.as_deref()).await?,
                }
                return Ok(());
            }
        };
        account_data::upsert(
            txn,
            &user_id,
            room_id.as_deref(),
            &data_type,
            &content.to_string(),
            position,
        )
        .await?;
        if !self.users.contains(&user_id) {
            self.users.push(user_id);
        }
        Ok(())
    }

    fn applied(&mut self, position: i64) {
        if !self.newly_erased.is_empty() {
            let mut set = self.erased.write().unwrap_or_else(|e| e.into_inner());
            set.extend(std::mem::take(&mut self.newly_erased));
        }
        let users = std::mem::take(&mut self.users);
        if let Some(n) = &self.notifier {
            n.do_send(Advance {
                stream: Some(Stream::AccountData),
                position,
                users,
                ..Default::default()
            });
        }
    }
}
