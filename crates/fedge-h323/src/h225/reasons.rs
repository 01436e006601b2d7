//! The reasons of H.225.0 ReleaseComplete and Facility as plain enums,
//! and their mapping to the generated ASN.1 choices. Owns nothing else.

use crate::asn::h225 as asn;
/// The H.225.0 ReleaseCompleteReason alternatives without parameters; `Other` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    NoBandwidth,
    GatekeeperResources,
    UnreachableDestination,
    DestinationRejection,
    InvalidRevision,
    NoPermission,
    UnreachableGatekeeper,
    GatewayResources,
    BadFormatAddress,
    AdaptiveBusy,
    InConf,
    Undefined,
    FacilityCallDeflection,
    SecurityDenied,
    CalledPartyNotRegistered,
    CallerNotRegistered,
    NewConnectionNeeded,
    GenericDataReason,
    NeededFeatureNotSupported,
    TunnelledSignallingRejected,
    InvalidCid,
    HopCountExceeded,
    Other,
}

impl ReleaseReason {
    pub(crate) fn from_asn(r: &asn::ReleaseCompleteReason) -> ReleaseReason {
        match r {
            asn::ReleaseCompleteReason::noBandwidth(()) => ReleaseReason::NoBandwidth,
            asn::ReleaseCompleteReason::gatekeeperResources(()) => {
                ReleaseReason::GatekeeperResources
            }
            asn::ReleaseCompleteReason::unreachableDestination(()) => {
                ReleaseReason::UnreachableDestination
            }
            asn::ReleaseCompleteReason::destinationRejection(()) => {
                ReleaseReason::DestinationRejection
            }
            asn::ReleaseCompleteReason::invalidRevision(()) => ReleaseReason::InvalidRevision,
            asn::ReleaseCompleteReason::noPermission(()) => ReleaseReason::NoPermission,
            asn::ReleaseCompleteReason::unreachableGatekeeper(()) => {
                ReleaseReason::UnreachableGatekeeper
            }
            asn::ReleaseCompleteReason::gatewayResources(()) => ReleaseReason::GatewayResources,
            asn::ReleaseCompleteReason::badFormatAddress(()) => ReleaseReason::BadFormatAddress,
            asn::ReleaseCompleteReason::adaptiveBusy(()) => ReleaseReason::AdaptiveBusy,
            asn::ReleaseCompleteReason::inConf(()) => ReleaseReason::InConf,
            asn::ReleaseCompleteReason::undefinedReason(()) => ReleaseReason::Undefined,
            asn::ReleaseCompleteReason::facilityCallDeflection(()) => {
                ReleaseReason::FacilityCallDeflection
            }
            asn::ReleaseCompleteReason::securityDenied(()) => ReleaseReason::SecurityDenied,
            asn::ReleaseCompleteReason::calledPartyNotRegistered(()) => {
                ReleaseReason::CalledPartyNotRegistered
            }
            asn::ReleaseCompleteReason::callerNotRegistered(()) => {
                ReleaseReason::CallerNotRegistered
            }
            asn::ReleaseCompleteReason::newConnectionNeeded(()) => {
                ReleaseReason::NewConnectionNeeded
            }
            asn::ReleaseCompleteReason::genericDataReason(()) => ReleaseReason::GenericDataReason,
            asn::ReleaseCompleteReason::neededFeatureNotSupported(()) => {
                ReleaseReason::NeededFeatureNotSupported
            }
            asn::ReleaseCompleteReason::tunnelledSignallingRejected(()) => {
                ReleaseReason::TunnelledSignallingRejected
            }
            asn::ReleaseCompleteReason::invalidCID(()) => ReleaseReason::InvalidCid,
            asn::ReleaseCompleteReason::hopCountExceeded(()) => ReleaseReason::HopCountExceeded,
            #[allow(unreachable_patterns)]
            _ => ReleaseReason::Other,
        }
    }

    pub(crate) fn to_asn(self) -> asn::ReleaseCompleteReason {
        match self {
            ReleaseReason::NoBandwidth => asn::ReleaseCompleteReason::noBandwidth(()),
            ReleaseReason::GatekeeperResources => {
                asn::ReleaseCompleteReason::gatekeeperResources(())
            }
            ReleaseReason::UnreachableDestination => {
                asn::ReleaseCompleteReason::unreachableDestination(())
            }
            ReleaseReason::DestinationRejection => {
                asn::ReleaseCompleteReason::destinationRejection(())
            }
            ReleaseReason::InvalidRevision => asn::ReleaseCompleteReason::invalidRevision(()),
            ReleaseReason::NoPermission => asn::ReleaseCompleteReason::noPermission(()),
            ReleaseReason::UnreachableGatekeeper => {
                asn::ReleaseCompleteReason::unreachableGatekeeper(())
            }
            ReleaseReason::GatewayResources => asn::ReleaseCompleteReason::gatewayResources(()),
            ReleaseReason::BadFormatAddress => asn::ReleaseCompleteReason::badFormatAddress(()),
            ReleaseReason::AdaptiveBusy => asn::ReleaseCompleteReason::adaptiveBusy(()),
            ReleaseReason::InConf => asn::ReleaseCompleteReason::inConf(()),
            ReleaseReason::Undefined => asn::ReleaseCompleteReason::undefinedReason(()),
            ReleaseReason::FacilityCallDeflection => {
                asn::ReleaseCompleteReason::facilityCallDeflection(())
            }
            ReleaseReason::SecurityDenied => asn::ReleaseCompleteReason::securityDenied(()),
            ReleaseReason::CalledPartyNotRegistered => {
                asn::ReleaseCompleteReason::calledPartyNotRegistered(())
            }
            ReleaseReason::CallerNotRegistered => {
                asn::ReleaseCompleteReason::callerNotRegistered(())
            }
            ReleaseReason::NewConnectionNeeded => {
                asn::ReleaseCompleteReason::newConnectionNeeded(())
            }
            ReleaseReason::GenericDataReason => asn::ReleaseCompleteReason::genericDataReason(()),
            ReleaseReason::NeededFeatureNotSupported => {
                asn::ReleaseCompleteReason::neededFeatureNotSupported(())
            }
            ReleaseReason::TunnelledSignallingRejected => {
                asn::ReleaseCompleteReason::tunnelledSignallingRejected(())
            }
            ReleaseReason::InvalidCid => asn::ReleaseCompleteReason::invalidCID(()),
            ReleaseReason::HopCountExceeded => asn::ReleaseCompleteReason::hopCountExceeded(()),
            ReleaseReason::Other => asn::ReleaseCompleteReason::undefinedReason(()),
        }
    }
}

/// The H.225.0 FacilityReason alternatives without parameters; `Other` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacilityReason {
    RouteCallToGatekeeper,
    CallForwarded,
    RouteCallToMc,
    Undefined,
    ConferenceListChoice,
    StartH245,
    NoH245,
    NewTokens,
    FeatureSetUpdate,
    ForwardedElements,
    TransportedInformation,
    Other,
}

impl FacilityReason {
    pub(crate) fn from_asn(r: &asn::FacilityReason) -> FacilityReason {
        match r {
            asn::FacilityReason::routeCallToGatekeeper(()) => FacilityReason::RouteCallToGatekeeper,
            asn::FacilityReason::callForwarded(()) => FacilityReason::CallForwarded,
            asn::FacilityReason::routeCallToMC(()) => FacilityReason::RouteCallToMc,
            asn::FacilityReason::undefinedReason(()) => FacilityReason::Undefined,
            asn::FacilityReason::conferenceListChoice(()) => FacilityReason::ConferenceListChoice,
            asn::FacilityReason::startH245(()) => FacilityReason::StartH245,
            asn::FacilityReason::noH245(()) => FacilityReason::NoH245,
            asn::FacilityReason::newTokens(()) => FacilityReason::NewTokens,
            asn::FacilityReason::featureSetUpdate(()) => FacilityReason::FeatureSetUpdate,
            asn::FacilityReason::forwardedElements(()) => FacilityReason::ForwardedElements,
            asn::FacilityReason::transportedInformation(()) => {
                FacilityReason::TransportedInformation
            }
            #[allow(unreachable_patterns)]
            _ => FacilityReason::Other,
        }
    }

    pub(crate) fn to_asn(self) -> asn::FacilityReason {
        match self {
            FacilityReason::RouteCallToGatekeeper => asn::FacilityReason::routeCallToGatekeeper(()),
            FacilityReason::CallForwarded => asn::FacilityReason::callForwarded(()),
            FacilityReason::RouteCallToMc => asn::FacilityReason::routeCallToMC(()),
            FacilityReason::Undefined => asn::FacilityReason::undefinedReason(()),
            FacilityReason::ConferenceListChoice => asn::FacilityReason::conferenceListChoice(()),
            FacilityReason::StartH245 => asn::FacilityReason::startH245(()),
            FacilityReason::NoH245 => asn::FacilityReason::noH245(()),
            FacilityReason::NewTokens => asn::FacilityReason::newTokens(()),
            FacilityReason::FeatureSetUpdate => asn::FacilityReason::featureSetUpdate(()),
            FacilityReason::ForwardedElements => asn::FacilityReason::forwardedElements(()),
            FacilityReason::TransportedInformation => {
                asn::FacilityReason::transportedInformation(())
            }
            FacilityReason::Other => asn::FacilityReason::undefinedReason(()),
        }
    }
}
