//! MQTT 5 properties (MQTT 5 §2.2.2): a typed [`Properties`] struct holding
//! every property of the specification, decoded and encoded in the context of
//! one packet (or of a will).
//!
//! Decoding refuses unknown identifiers and identifiers not defined for the
//! packet (malformed, §2.2.2.2), properties that appear twice where the
//! specification forbids it and out-of-range values (protocol errors).
//! Encoding refuses the same, so Bulwark never sends what it would refuse.
//! In MQTT 3.1.1 there are no properties: the packet codecs skip this module.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::packet::QoS;
use crate::strings::{self, Reader};
use crate::topic::TopicName;
use crate::varint;

mod id;

pub use id::{PropertyContext, PropertyId};

/// The Payload Format Indicator: unspecified bytes, or UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    Unspecified = 0,
    Utf8 = 1,
}

/// One User Property: a name/value pair; order and repetition are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    pub name: String,
    pub value: String,
}

/// Every MQTT 5 property; each packet uses the subset §3 allows it.
///
/// Fields that the specification bounds are typed so that out-of-range
/// values cannot be built (`receive_maximum` is never 0, for instance).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<PayloadFormat>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH to a client (one per matching subscription), at
    /// most one in SUBSCRIBE; each in 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<NonZeroU16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<NonZeroU16>,
    /// Only [`QoS::AtMostOnce`] or [`QoS::AtLeastOnce`] may be sent.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// A property value as it goes on the wire.
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    /// Wire length, assuming [`Value::check`] passed.
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::U16(_) => 2,
            Value::U32(_) => 4,
            Value::VarInt(v) => varint::len(*v),
            Value::Str(s) => 2 + s.len(),
            Value::Bin(b) => 2 + b.len(),
            Value::Pair(k, v) => 4 + k.len() + v.len(),
        }
    }

    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        match self {
            Value::VarInt(v) if *v == 0 || *v > varint::MAX => {
                Err(EncodeError::InvalidPropertyValue { property: id })
            }
            Value::Str(s) => strings::string_len(s).map(drop),
            Value::Bin(b) => strings::binary_len(b).map(drop),
            Value::Pair(k, v) => strings::string_len(k).and(strings::string_len(v)).map(drop),
            _ => Ok(()),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            Value::Byte(b) => dst.put_u8(*b),
            Value::U16(v) => dst.put_u16(*v),
            Value::U32(v) => dst.put_u32(*v),
            Value::VarInt(v) => varint::write(*v, dst),
            Value::Str(s) => strings::put_string(dst, s),
            Value::Bin(b) => strings::put_binary(dst, b),
            Value::Pair(k, v) => {
                strings::put_string(dst, k);
                strings::put_string(dst, v);
            }
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, id: PropertyId) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { property: id });
    }
    *slot = Some(value);
    Ok(())
}

fn read_flag(r: &mut Reader, id: PropertyId) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue { property: id }),
    }
}

impl Properties {
    /// No property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Reads a property block (length, then properties) for `ctx`.
    pub(crate) fn decode(r: &mut Reader, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = usize::try_from(r.varint()?).map_err(|_| DecodeError::Truncated)?;
        let mut r = r.sub(len)?;
        let mut p = Properties::default();
        while !r.is_empty() {
            let raw = r.varint()?;
            let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty { id: raw })?;
            if !id.allowed_in(ctx) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    context: ctx,
                });
            }
            p.read_one(id, &mut r, ctx)?;
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(p)
    }

    fn read_one(
        &mut self,
        id: PropertyId,
        r: &mut Reader,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        use PropertyId as P;
        let invalid = DecodeError::InvalidPropertyValue { property: id };
        match id {
            P::PayloadFormatIndicator => {
                let v = match r.u8()? {
                    0 => PayloadFormat::Unspecified,
                    1 => PayloadFormat::Utf8,
                    _ => return Err(invalid),
                };
                set_once(&mut self.payload_format_indicator, v, id)
            }
            P::MessageExpiryInterval => set_once(&mut self.message_expiry_interval, r.u32()?, id),
            P::ContentType => set_once(&mut self.content_type, r.string()?, id),
            P::ResponseTopic => {
                let topic = TopicName::new(r.string()?)
                    .map_err(|source| DecodeError::InvalidTopicName { source })?;
                set_once(&mut self.response_topic, topic, id)
            }
            P::CorrelationData => set_once(&mut self.correlation_data, r.binary()?, id),
            P::SubscriptionIdentifier => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(invalid);
                }
                if ctx == PropertyContext::SUBSCRIBE && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty { property: id });
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            P::SessionExpiryInterval => set_once(&mut self.session_expiry_interval, r.u32()?, id),
            P::AssignedClientIdentifier => {
                set_once(&mut self.assigned_client_identifier, r.string()?, id)
            }
            P::ServerKeepAlive => set_once(&mut self.server_keep_alive, r.u16()?, id),
            P::AuthenticationMethod => set_once(&mut self.authentication_method, r.string()?, id),
            P::AuthenticationData => set_once(&mut self.authentication_data, r.binary()?, id),
            P::RequestProblemInformation => {
                let v = read_flag(r, id)?;
                set_once(&mut self.request_problem_information, v, id)
            }
            P::WillDelayInterval => set_once(&mut self.will_delay_interval, r.u32()?, id),
            P::RequestResponseInformation => {
                let v = read_flag(r, id)?;
                set_once(&mut self.request_response_information, v, id)
            }
            P::ResponseInformation => set_once(&mut self.response_information, r.string()?, id),
            P::ServerReference => set_once(&mut self.server_reference, r.string()?, id),
            P::ReasonString => set_once(&mut self.reason_string, r.string()?, id),
            P::ReceiveMaximum => {
                let v = NonZeroU16::new(r.u16()?).ok_or(invalid)?;
                set_once(&mut self.receive_maximum, v, id)
            }
            P::TopicAliasMaximum => set_once(&mut self.topic_alias_maximum, r.u16()?, id),
            P::TopicAlias => {
                let v = NonZeroU16::new(r.u16()?).ok_or(invalid)?;
                set_once(&mut self.topic_alias, v, id)
            }
            P::MaximumQoS => {
                let v = match r.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(invalid),
                };
                set_once(&mut self.maximum_qos, v, id)
            }
            P::RetainAvailable => {
                let v = read_flag(r, id)?;
                set_once(&mut self.retain_available, v, id)
            }
            P::UserProperty => {
                let name = r.string()?;
                let value = r.string()?;
                self.user_properties.push(UserProperty { name, value });
                Ok(())
            }
            P::MaximumPacketSize => {
                let v = NonZeroU32::new(r.u32()?).ok_or(invalid)?;
                set_once(&mut self.maximum_packet_size, v, id)
            }
            P::WildcardSubscriptionAvailable => {
                let v = read_flag(r, id)?;
                set_once(&mut self.wildcard_subscription_available, v, id)
            }
            P::SubscriptionIdentifierAvailable => {
                let v = read_flag(r, id)?;
                set_once(&mut self.subscription_identifier_available, v, id)
            }
            P::SharedSubscriptionAvailable => {
                let v = read_flag(r, id)?;
                set_once(&mut self.shared_subscription_available, v, id)
            }
        }
    }

    /// Calls `f` for each property that is set, in identifier order (user
    /// properties and subscription identifiers in their own order).
    fn visit(&self, f: &mut dyn FnMut(PropertyId, Value<'_>)) {
        use PropertyId as P;
        if let Some(v) = self.payload_format_indicator {
            f(P::PayloadFormatIndicator, Value::Byte(v as u8));
        }
        if let Some(v) = self.message_expiry_interval {
            f(P::MessageExpiryInterval, Value::U32(v));
        }
        if let Some(v) = &self.content_type {
            f(P::ContentType, Value::Str(v));
        }
        if let Some(v) = &self.response_topic {
            f(P::ResponseTopic, Value::Str(v.as_str()));
        }
        if let Some(v) = &self.correlation_data {
            f(P::CorrelationData, Value::Bin(v));
        }
        for v in &self.subscription_identifiers {
            f(P::SubscriptionIdentifier, Value::VarInt(*v));
        }
        if let Some(v) = self.session_expiry_interval {
            f(P::SessionExpiryInterval, Value::U32(v));
        }
        if let Some(v) = &self.assigned_client_identifier {
            f(P::AssignedClientIdentifier, Value::Str(v));
        }
        if let Some(v) = self.server_keep_alive {
            f(P::ServerKeepAlive, Value::U16(v));
        }
        if let Some(v) = &self.authentication_method {
            f(P::AuthenticationMethod, Value::Str(v));
        }
        if let Some(v) = &self.authentication_data {
            f(P::AuthenticationData, Value::Bin(v));
        }
        if let Some(v) = self.request_problem_information {
            f(P::RequestProblemInformation, Value::Byte(u8::from(v)));
        }
        if let Some(v) = self.will_delay_interval {
            f(P::WillDelayInterval, Value::U32(v));
        }
        if let Some(v) = self.request_response_information {
            f(P::RequestResponseInformation, Value::Byte(u8::from(v)));
        }
        if let Some(v) = &self.response_information {
            f(P::ResponseInformation, Value::Str(v));
        }
        if let Some(v) = &self.server_reference {
            f(P::ServerReference, Value::Str(v));
        }
        if let Some(v) = &self.reason_string {
            f(P::ReasonString, Value::Str(v));
        }
        if let Some(v) = self.receive_maximum {
            f(P::ReceiveMaximum, Value::U16(v.get()));
        }
        if let Some(v) = self.topic_alias_maximum {
            f(P::TopicAliasMaximum, Value::U16(v));
        }
        if let Some(v) = self.topic_alias {
            f(P::TopicAlias, Value::U16(v.get()));
        }
        if let Some(v) = self.maximum_qos {
            f(P::MaximumQoS, Value::Byte(v as u8));
        }
        if let Some(v) = self.retain_available {
            f(P::RetainAvailable, Value::Byte(u8::from(v)));
        }
        for up in &self.user_properties {
            f(P::UserProperty, Value::Pair(&up.name, &up.value));
        }
        if let Some(v) = self.maximum_packet_size {
            f(P::MaximumPacketSize, Value::U32(v.get()));
        }
        if let Some(v) = self.wildcard_subscription_available {
            f(P::WildcardSubscriptionAvailable, Value::Byte(u8::from(v)));
        }
        if let Some(v) = self.subscription_identifier_available {
            f(P::SubscriptionIdentifierAvailable, Value::Byte(u8::from(v)));
        }
        if let Some(v) = self.shared_subscription_available {
            f(P::SharedSubscriptionAvailable, Value::Byte(u8::from(v)));
        }
    }

    /// Checks that these properties may be sent in `ctx` and returns the
    /// wire length of the block, length prefix included.
    pub(crate) fn encoded_len(&self, ctx: PropertyContext) -> Result<usize, EncodeError> {
        let mut first_error = None;
        self.visit(&mut |id, value| {
            if first_error.is_some() {
                return;
            }
            if !id.allowed_in(ctx) {
                first_error = Some(EncodeError::PropertyNotAllowed {
                    property: id,
                    context: ctx,
                });
            } else if let Err(e) = value.check(id) {
                first_error = Some(e);
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(EncodeError::InvalidPropertyValue {
                property: PropertyId::MaximumQoS,
            });
        }
        if ctx == PropertyContext::SUBSCRIBE && self.subscription_identifiers.len() > 1 {
            return Err(EncodeError::InvalidPropertyValue {
                property: PropertyId::SubscriptionIdentifier,
            });
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(EncodeError::AuthenticationDataWithoutMethod);
        }
        let len = self.body_len();
        let len32 = u32::try_from(len)
            .ok()
            .filter(|&l| l <= varint::MAX)
            .ok_or(EncodeError::TooLarge { size: len })?;
        Ok(varint::len(len32) + len)
    }

    /// Length of the properties without the length prefix.
    fn body_len(&self) -> usize {
        let mut len = 0;
        self.visit(&mut |_, value| len += 1 + value.len());
        len
    }

    /// Writes the block; [`Properties::encoded_len`] must have passed.
    pub(crate) fn write(&self, dst: &mut BytesMut) {
        let len = u32::try_from(self.body_len()).unwrap_or(varint::MAX);
        varint::write(len, dst);
        self.visit(&mut |id, value| {
            dst.put_u8(id as u8);
            value.write(dst);
        });
    }
}
