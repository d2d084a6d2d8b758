"""Hypothesis fault campaigns: generated scenarios, run on warm stacks, failures shrunk and frozen.

:mod:`~harness.campaign.driver` (hypothesis over one stack), :mod:`~harness.campaign.workers`
(several stacks in parallel), :mod:`~harness.campaign.result` (what a campaign found),
:mod:`~harness.campaign.reproduce` (signatures, one-line reproduction commands),
:mod:`~harness.campaign.freeze` (regression cases). Generation is :mod:`faults.strategies`.
"""

from harness.campaign.driver import run_campaign
from harness.campaign.freeze import freeze, load_regression
from harness.campaign.result import CampaignFailure, CampaignProgress, CampaignResult
from harness.campaign.workers import run_campaign_workers

__all__ = ["CampaignFailure", "CampaignProgress", "CampaignResult", "freeze", "load_regression", "run_campaign",
           "run_campaign_workers"]
