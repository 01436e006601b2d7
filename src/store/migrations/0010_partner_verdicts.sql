-- Each partner's verdicts per hour (refusals by rule and direction, IM
-- tests by result), summed over every node: the partner's own view shows
-- them over time. Each node adds the counts it saw since its last sample.
CREATE TABLE partner_verdicts (
    hour      TEXT NOT NULL,
    partner   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    rule      TEXT NOT NULL,
    direction TEXT NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (hour, partner, kind, rule, direction)
);
CREATE INDEX partner_verdicts_partner ON partner_verdicts (partner, hour);
