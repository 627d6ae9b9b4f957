//! MQTT 5 reason codes (MQTT 5 §2.4) and the 3.1.1 return codes they stand
//! for.
//!
//! One enum holds every value of the specification. Value 0x00 has three
//! names in the specification (Success, Normal disconnection, Granted QoS 0);
//! it is [`ReasonCode::Success`] here, with the other names as constants.
//! Which codes each packet may carry is checked when decoding and encoding
//! ([`ReasonCode::allowed_in`]).

use crate::packet::PacketType;

macro_rules! reason_codes {
    ($($(#[$meta:meta])* $name:ident = $value:literal,)*) => {
        /// A reason code of MQTT 5; codes from 0x80 are errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum ReasonCode {
            $($(#[$meta])* $name = $value,)*
        }

        impl ReasonCode {
            /// Every reason code, in numeric order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$name,)*];
        }

        impl TryFrom<u8> for ReasonCode {
            type Error = u8;
            fn try_from(value: u8) -> Result<Self, u8> {
                match value {
                    $($value => Ok(ReasonCode::$name),)*
                    other => Err(other),
                }
            }
        }
    };
}

reason_codes! {
    /// Success; also Normal disconnection and Granted QoS 0.
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Codes from 0x80 report a failure.
    pub fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// Whether MQTT 5 allows this code in `packet` (the tables of §3).
    pub fn allowed_in(self, packet: PacketType) -> bool {
        use ReasonCode as R;
        match packet {
            PacketType::ConnAck => matches!(
                self,
                R::Success
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::UnsupportedProtocolVersion
                    | R::ClientIdentifierNotValid
                    | R::BadUserNameOrPassword
                    | R::NotAuthorized
                    | R::ServerUnavailable
                    | R::ServerBusy
                    | R::Banned
                    | R::BadAuthenticationMethod
                    | R::TopicNameInvalid
                    | R::PacketTooLarge
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::ConnectionRateExceeded
            ),
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                R::Success
                    | R::NoMatchingSubscribers
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicNameInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
            ),
            PacketType::PubRel | PacketType::PubComp => {
                matches!(self, R::Success | R::PacketIdentifierNotFound)
            }
            PacketType::SubAck => matches!(
                self,
                R::Success
                    | R::GrantedQoS1
                    | R::GrantedQoS2
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::SharedSubscriptionsNotSupported
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            PacketType::UnsubAck => matches!(
                self,
                R::Success
                    | R::NoSubscriptionExisted
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
            ),
            PacketType::Disconnect => matches!(
                self,
                R::Success
                    | R::DisconnectWithWillMessage
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::ServerBusy
                    | R::ServerShuttingDown
                    | R::KeepAliveTimeout
                    | R::SessionTakenOver
                    | R::TopicFilterInvalid
                    | R::TopicNameInvalid
                    | R::ReceiveMaximumExceeded
                    | R::TopicAliasInvalid
                    | R::PacketTooLarge
                    | R::MessageRateTooHigh
                    | R::QuotaExceeded
                    | R::AdministrativeAction
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::SharedSubscriptionsNotSupported
                    | R::ConnectionRateExceeded
                    | R::MaximumConnectTime
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            PacketType::Auth => matches!(
                self,
                R::Success | R::ContinueAuthentication | R::ReAuthenticate
            ),
            _ => false,
        }
    }

    /// The 3.1.1 CONNACK return code closest to this reason (3.1.1 has six).
    ///
    /// Lossy by design, so one session can answer both versions: refusals
    /// without a 3.1.1 equivalent become "not authorized" (5) when they are
    /// about the client, and "server unavailable" (3) when they are about
    /// the server.
    pub fn to_v311_connack(self) -> u8 {
        use ReasonCode as R;
        match self {
            R::Success => 0,
            R::UnsupportedProtocolVersion => 1,
            R::ClientIdentifierNotValid => 2,
            R::ServerUnavailable
            | R::ServerBusy
            | R::UseAnotherServer
            | R::ServerMoved
            | R::QuotaExceeded
            | R::ConnectionRateExceeded
            | R::UnspecifiedError
            | R::ImplementationSpecificError => 3,
            R::BadUserNameOrPassword | R::BadAuthenticationMethod => 4,
            _ => 5,
        }
    }

    /// The reason code a 3.1.1 CONNACK return code stands for.
    pub fn from_v311_connack(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The 3.1.1 SUBACK return code: the granted QoS, or 0x80 for any failure.
    pub fn to_v311_suback(self) -> u8 {
        match self {
            Self::Success => 0x00,
            Self::GrantedQoS1 => 0x01,
            Self::GrantedQoS2 => 0x02,
            _ => 0x80,
        }
    }

    /// The reason code a 3.1.1 SUBACK return code stands for.
    pub fn from_v311_suback(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => Self::Success,
            0x01 => Self::GrantedQoS1,
            0x02 => Self::GrantedQoS2,
            0x80 => Self::UnspecifiedError,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} (0x{:02X})", self.as_u8())
    }
}

impl Default for ReasonCode {
    /// Success (0x00).
    fn default() -> Self {
        ReasonCode::Success
    }
}
