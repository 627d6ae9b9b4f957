//! Property identifiers and where each may appear (MQTT 5 §2.2.2.2, table
//! 2-4).

use std::fmt;

use crate::packet::PacketType;

macro_rules! property_ids {
    ($($name:ident = $value:literal,)*) => {
        /// An MQTT 5 property identifier.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum PropertyId {
            $($name = $value,)*
        }

        impl PropertyId {
            /// Every property identifier, in numeric order.
            pub const ALL: &'static [PropertyId] = &[$(PropertyId::$name,)*];

            /// The identifier for a wire value, if it is one.
            pub fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $($value => Some(PropertyId::$name),)*
                    _ => None,
                }
            }
        }
    };
}

property_ids! {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

/// Where a property block sits: a packet's variable header, or a CONNECT's
/// will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    Packet(PacketType),
    Will,
}

impl fmt::Display for PropertyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyContext::Packet(t) => write!(f, "{t}"),
            PropertyContext::Will => f.write_str("will properties"),
        }
    }
}

impl PropertyContext {
    pub(crate) const CONNECT: Self = Self::Packet(PacketType::Connect);
    pub(crate) const CONNACK: Self = Self::Packet(PacketType::ConnAck);
    pub(crate) const PUBLISH: Self = Self::Packet(PacketType::Publish);
    pub(crate) const SUBSCRIBE: Self = Self::Packet(PacketType::Subscribe);
    pub(crate) const DISCONNECT: Self = Self::Packet(PacketType::Disconnect);
    pub(crate) const AUTH: Self = Self::Packet(PacketType::Auth);
}

impl PropertyId {
    /// Whether MQTT 5 defines this property for `ctx`.
    pub fn allowed_in(self, ctx: PropertyContext) -> bool {
        use PacketType as T;
        use PropertyId as P;
        let packet = match ctx {
            PropertyContext::Will => {
                return matches!(
                    self,
                    P::PayloadFormatIndicator
                        | P::MessageExpiryInterval
                        | P::ContentType
                        | P::ResponseTopic
                        | P::CorrelationData
                        | P::WillDelayInterval
                        | P::UserProperty
                );
            }
            PropertyContext::Packet(t) => t,
        };
        match self {
            P::UserProperty => !matches!(packet, T::PingReq | T::PingResp),
            P::PayloadFormatIndicator
            | P::MessageExpiryInterval
            | P::ContentType
            | P::ResponseTopic
            | P::CorrelationData
            | P::TopicAlias => packet == T::Publish,
            P::SubscriptionIdentifier => matches!(packet, T::Publish | T::Subscribe),
            P::SessionExpiryInterval => matches!(packet, T::Connect | T::ConnAck | T::Disconnect),
            P::AuthenticationMethod | P::AuthenticationData => {
                matches!(packet, T::Connect | T::ConnAck | T::Auth)
            }
            P::RequestProblemInformation | P::RequestResponseInformation => packet == T::Connect,
            P::ReceiveMaximum | P::TopicAliasMaximum | P::MaximumPacketSize => {
                matches!(packet, T::Connect | T::ConnAck)
            }
            P::AssignedClientIdentifier
            | P::ServerKeepAlive
            | P::ResponseInformation
            | P::MaximumQoS
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => packet == T::ConnAck,
            P::ServerReference => matches!(packet, T::ConnAck | T::Disconnect),
            P::ReasonString => matches!(
                packet,
                T::ConnAck
                    | T::PubAck
                    | T::PubRec
                    | T::PubRel
                    | T::PubComp
                    | T::SubAck
                    | T::UnsubAck
                    | T::Disconnect
                    | T::Auth
            ),
            P::WillDelayInterval => false,
        }
    }
}

impl fmt::Display for PropertyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} (0x{:02X})", *self as u8)
    }
}
