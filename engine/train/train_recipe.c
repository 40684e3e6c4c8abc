/*
 * train_recipe.c - from the roster's recipe to the engine's model and optimizer specs.
 */
#include <stdio.h>
#include <string.h>

#include "engine/train/train.h"

int train_specs_from_recipe(const struct cwt_recipe *r, struct eng_model_spec *model,
                            struct eng_optim_spec *optim, char *err, size_t errlen)
{
    int is_resnet = strcmp(r->model, "resnet") == 0;

    if (!is_resnet && strcmp(r->model, "cnn-small") != 0)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                          "model '%s' is not known (cnn-small or resnet)", r->model);
    if (is_resnet && r->resnet_depth != 8 && r->resnet_depth != 10 && r->resnet_depth != 18)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                          "resnet depth %u is not supported (8, 10 or 18)", r->resnet_depth);
    if (r->input_c == 0 || r->input_c > TRAIN_MAX_CHANNELS || r->input_h == 0 || r->input_w == 0)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED, "input shape %ux%ux%u is not supported",
                          r->input_h, r->input_w, r->input_c);
    if (r->classes < 2 || r->classes > CWT_MAX_CLASSES)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED, "%u classes are not supported",
                          r->classes);
    memset(model, 0, sizeof(*model));
    snprintf(model->arch, sizeof(model->arch), "%s", r->model);
    model->depth = is_resnet ? r->resnet_depth : 0;
    model->width = is_resnet ? (float)r->width : 1.0f;
    model->in_h = r->input_h;
    model->in_w = r->input_w;
    model->in_c = r->input_c;
    model->classes = r->classes;
    model->dropout = (float)r->dropout;
    model->seed = r->seed;

    memset(optim, 0, sizeof(*optim));
    switch (r->optimizer) {
    case CWT_OPT_ADAM:
        optim->kind = ENG_ADAM;
        break;
    case CWT_OPT_ADAMW:
        optim->kind = ENG_ADAMW;
        break;
    case CWT_OPT_SGD:
    default:
        optim->kind = ENG_SGD;
        break;
    }
    optim->momentum = (float)r->momentum;
    optim->nesterov = r->nesterov;
    optim->weight_decay = (float)r->weight_decay;
    optim->beta1 = (float)r->beta1;
    optim->beta2 = (float)r->beta2;
    optim->eps = (float)r->eps;
    return 0;
}

int train_model_from_recipe(struct eng_device *dev, const struct cwt_recipe *r,
                            struct eng_model **out, char *err, size_t errlen)
{
    struct eng_model_spec ms;
    struct eng_optim_spec os;
    int rc;

    if ((rc = train_specs_from_recipe(r, &ms, &os, err, errlen)) != 0)
        return rc;
    rc = eng_model_create(dev, &ms, &os, r->batch_size > 0 ? r->batch_size : 1, out, err, errlen);
    if (rc == 0 && (rc = train_model_finetune(*out, r, err, errlen)) != 0) {
        eng_model_free(*out);
        *out = NULL;
    }
    return rc;
}

int train_model_finetune(struct eng_model *m, const struct cwt_recipe *r, char *err, size_t errlen)
{
    struct eng_finetune f = {r->freeze_stages, (float)r->backbone_lr_scale};

    /* Without recipe.finetune the model keeps a single group (nothing to set). */
    if (r->freeze_stages == 0 && r->backbone_lr_scale == 1.0)
        return 0;
    return eng_model_set_finetune(m, &f, err, errlen);
}

int train_recipe_fingerprint(const struct cwt_recipe *r, const char *device_choice, uint8_t out[32],
                             char *err, size_t errlen)
{
    struct cwt_recipe one = *r;
    struct eng_device *dev = NULL;
    struct eng_model *m = NULL;
    int rc;

    one.batch_size = 1; /* the fingerprint does not depend on it; keep the arena small */
    if ((rc = eng_device_open(device_choice, 0, &dev, err, errlen)) != 0)
        return rc;
    rc = train_model_from_recipe(dev, &one, &m, err, errlen);
    if (rc == 0)
        eng_model_fingerprint(m, out);
    eng_model_free(m);
    eng_device_close(dev);
    return rc;
}
